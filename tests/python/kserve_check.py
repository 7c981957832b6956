"""Talks to mtml's Open Inference Protocol endpoint with the KServe Python SDK, unchanged.

Usage: kserve_check.py HOST:PORT MODEL FEATURES. Prints one JSON object with what the server
answered; exits non-zero if the SDK fails. The Rust test (mtml/tests/tritonclient.rs) compares
the numbers with the model in process.
"""

import asyncio
import json
import sys

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest


async def main() -> None:
    url, model, features = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = InferenceGRPCClient(url=url, use_ssl=False)
    assert await client.is_server_live(), "server not live"
    assert await client.is_server_ready(), "server not ready"
    assert await client.is_model_ready(model), f"{model} not ready"

    rows = np.linspace(-0.04, 0.06, 2 * features, dtype=np.float32).reshape(2, features)
    infer_input = InferInput(name="features", shape=[2, features], datatype="FP32")
    infer_input.set_data_from_numpy(rows)
    request = InferRequest(model_name=model, infer_inputs=[infer_input], request_id="0af7651916cd43dd8448eb211c80319c")
    response = await client.infer(request)
    outputs = {o.name: o.as_numpy() for o in response.outputs}

    error = None
    try:
        await client.infer(InferRequest(model_name="no-such-model", infer_inputs=[infer_input]))
    except grpc.RpcError as rpc_error:
        error = {"code": rpc_error.code().name, "details": rpc_error.details()}
    await client.close()
    print(
        json.dumps(
            {
                "id": response.id,
                "model_name": response.model_name,
                "rows": rows.flatten().tolist(),
                "probabilities": outputs["probabilities"].flatten().tolist(),
                "unknown_model": error,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
