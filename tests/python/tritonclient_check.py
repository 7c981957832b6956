"""Talks to mtml's Open Inference Protocol endpoint with NVIDIA's own Python client, unchanged.

Usage: tritonclient_check.py HOST:PORT MODEL. Prints one JSON object with what the server
answered; exits non-zero with a message if the client fails or an answer is not as the protocol
says. The Rust test (mtml/tests/tritonclient.rs) compares the numbers with the model in process.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main() -> None:
    url, model = sys.argv[1], sys.argv[2]
    client = grpcclient.InferenceServerClient(url=url)
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready(model), f"{model} not ready"
    server = client.get_server_metadata()
    metadata = client.get_model_metadata(model)
    tensor, output = metadata.inputs[0], metadata.outputs[0]
    features = int(tensor.shape[1])

    rows = np.linspace(-0.05, 0.05, 2 * features, dtype=np.float32).reshape(2, features)
    infer_input = grpcclient.InferInput(tensor.name, [2, features], "FP32")
    infer_input.set_data_from_numpy(rows)
    result = client.infer(
        model,
        [infer_input],
        request_id="4bf92f3577b34da6a3ce929d0e0e4736",
        outputs=[grpcclient.InferRequestedOutput(output.name)],
    )
    probabilities = result.as_numpy(output.name)
    assert probabilities.shape == (2, 2), probabilities.shape
    assert result.get_response().id == "4bf92f3577b34da6a3ce929d0e0e4736", "request id not echoed"

    errors = {}
    try:
        client.infer("no-such-model", [infer_input])
    except InferenceServerException as error:
        errors["unknown_model"] = error.message()
    wrong = grpcclient.InferInput("not-the-input", [2, features], "FP32")
    wrong.set_data_from_numpy(rows)
    try:
        client.infer(model, [wrong])
    except InferenceServerException as error:
        errors["wrong_input"] = error.message()

    index = client.get_model_repository_index(as_json=True)
    statistics = client.get_inference_statistics(model, as_json=True)
    print(
        json.dumps(
            {
                "server": server.name,
                "input": tensor.name,
                "features": features,
                "rows": rows.flatten().tolist(),
                "probabilities": probabilities.flatten().tolist(),
                "errors": errors,
                "index": index.get("models", []),
                "statistics": statistics.get("model_stats", []),
            }
        )
    )


if __name__ == "__main__":
    main()
