"""Train the fx-direction models on features exported by mtml's own feature code.

Run through `cargo xtask train`, which exports the features first. The task: from the features
of a tick, predict whether the mid price is higher 60 seconds later (ticks where it is unchanged
are left out). The split is by time: the first 70% of rows train, the last 30% test, so nothing
from the test period leaks into training.

Writes, for each version, models/fx-direction-vN.onnx and models/fx-direction-vN.metrics.json.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime
import sklearn
import skl2onnx
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TRAIN_FRACTION = 0.7


def load(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
    names = header[2 : header.index("mid")]
    label_col = header.index("label_up")
    time_col = header.index("time_msc")
    raw = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=[time_col] + list(range(2, 2 + len(names))) + [label_col], filling_values=np.nan)
    raw = raw[~np.isnan(raw[:, -1])]
    return names, raw[:, 0].astype(np.int64), raw[:, 1:-1].astype(np.float32), raw[:, -1].astype(np.int64)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(model, names, version, path, description, feature_set):
    onx = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, len(names)]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onx.doc_string = description
    onx.producer_name = "mtml models/train.py"
    onx.model_version = version
    for key, value in {"feature_set": feature_set, "features": ",".join(names), "name": "fx-direction", "version": str(version)}.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(onx, path)


def check_onnx(path, model, x):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"features": x[:2000]})
    probabilities = next(o for o in outputs if o.ndim == 2 and o.shape[1] == 2)
    gap = float(np.abs(probabilities[:, 1] - model.predict_proba(x[:2000])[:, 1]).max())
    if gap > 1e-4:
        sys.exit(f"{path}: ONNX and scikit-learn disagree by {gap}")
    return gap


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", required=True)
    parser.add_argument("--source", required=True, help="tick file the features came from")
    parser.add_argument("--out", default="models")
    parser.add_argument("--feature-set", required=True, help="`mtml features describe --json` of the build that exported")
    args = parser.parse_args()

    with open(args.feature_set) as f:
        described = json.load(f)
    feature_set = described["id"]
    names, times, x, y = load(args.features)
    expected = [f["name"] for f in described["features"]]
    if names != expected:
        sys.exit(f"{args.features} has columns {names}, but {feature_set} is {expected}: export again with this build")
    split = int(len(y) * TRAIN_FRACTION)
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]
    majority = int(np.mean(y_train) >= 0.5)
    baselines = {
        "majority_class": float(np.mean(y_test == majority)),
        # Momentum: up next if the mid is above the last M1 close now.
        "momentum_mid_vs_close": float(np.mean(y_test == (x_test[:, names.index("mid_vs_close")] > 0))),
        # Mean reversion: the opposite.
        "reversion_mid_vs_close": float(np.mean(y_test == (x_test[:, names.index("mid_vs_close")] < 0))),
    }
    candidates = [
        (1, "standardised logistic regression", make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))),
        (2, "gradient boosted trees, 60 trees of depth 3", GradientBoostingClassifier(n_estimators=60, max_depth=3, learning_rate=0.1, subsample=0.5, random_state=7)),
    ]
    for version, description, model in candidates:
        model.fit(x_train, y_train)
        p = model.predict_proba(x_test)[:, 1]
        accuracy = float(np.mean((p >= 0.5) == y_test))
        path = os.path.join(args.out, f"fx-direction-v{version}.onnx")
        export(model, names, version, path, description, feature_set)
        gap = check_onnx(path, model, x_test)
        metrics = {
            "name": "fx-direction",
            "version": version,
            "model": description,
            "feature_set": feature_set,
            "features": names,
            "task": "mid price higher 60 s after the tick (unchanged mids excluded)",
            "source": os.path.basename(args.source),
            "source_sha256": sha256(args.source),
            "train_rows": int(split),
            "test_rows": int(len(y_test)),
            "train_period_ms": [int(times[0]), int(times[split - 1])],
            "test_period_ms": [int(times[split]), int(times[-1])],
            "test_up_fraction": float(np.mean(y_test)),
            "out_of_sample": {
                "accuracy": accuracy,
                "log_loss": float(log_loss(y_test, p)),
                "roc_auc": float(roc_auc_score(y_test, p)),
                "probability_quantiles": {str(q): float(np.quantile(p, q)) for q in (0.01, 0.1, 0.5, 0.9, 0.99)},
            },
            "baselines_accuracy": baselines,
            "onnx_max_abs_gap_vs_sklearn": gap,
            "onnx_sha256": sha256(path),
            "versions": {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__, "numpy": np.__version__},
        }
        with open(os.path.join(args.out, f"fx-direction-v{version}.metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")
        best_baseline = max(baselines.values())
        print(f"v{version} {description}: accuracy {accuracy:.4f} (best baseline {best_baseline:.4f}), AUC {metrics['out_of_sample']['roc_auc']:.4f}, written {path}")


if __name__ == "__main__":
    main()
