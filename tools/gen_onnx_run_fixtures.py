#!/usr/bin/env python3
"""ONNX Runtime's outputs on seeded inputs, for `convnet run` on ONNX models and on imported
multi-output models (crates/convnet-cli/tests/onnx_run_cli.rs).

    ~/.venv-torch/bin/python tools/gen_onnx_run_fixtures.py

Writes crates/convnet-cli/tests/fixtures/onnx_run/:

  tiny_input.npy       float32 [2, 3, 9, 9], seed 7, uniform in [-1, 1)
  tiny_ort.npy         ONNX Runtime's logits [2, 4] of
                       crates/convnet-onnx/tests/fixtures/torch_legacy.onnx on it
  pnet_input.npy       float32 [2, 3, 24, 24], seed 8, uniform in [-1, 1)
  pnet_ort_boxes.npy, pnet_ort_probabilities.npy
                       ONNX Runtime's two outputs ([2, 4, 7, 7], [2, 2, 7, 7]) of MTCNN's PNet
                       (crates/convnet-onnx/tests/fixtures/nets/mtcnn_pnet.onnx, fully
                       convolutional; its graph fixes the input at 1x3x128x128, so the copy
                       run here has that input's batch, height and width made free, as
                       `convnet import --input-shape 24x24x3` does)
"""

import os

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates", "convnet-onnx", "tests", "fixtures")
OUT = os.path.join(ROOT, "crates", "convnet-cli", "tests", "fixtures", "onnx_run")


def seeded(seed, shape):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def run(model_bytes, x):
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def main():
    os.makedirs(OUT, exist_ok=True)
    x = seeded(7, (2, 3, 9, 9))
    with open(os.path.join(FIXTURES, "torch_legacy.onnx"), "rb") as f:
        (logits,) = run(f.read(), x)
    np.save(os.path.join(OUT, "tiny_input.npy"), x)
    np.save(os.path.join(OUT, "tiny_ort.npy"), logits.astype(np.float32))

    pnet = onnx.load(os.path.join(FIXTURES, "nets", "mtcnn_pnet.onnx"))
    dims = pnet.graph.input[0].type.tensor_type.shape.dim
    for i, name in [(0, "batch"), (2, "height"), (3, "width")]:
        dims[i].ClearField("dim_value")
        dims[i].dim_param = name
    for output in pnet.graph.output:
        for d in output.type.tensor_type.shape.dim:
            d.ClearField("dim_value")
    x = seeded(8, (2, 3, 24, 24))
    boxes, probabilities = run(pnet.SerializeToString(), x)
    assert boxes.shape == (2, 4, 7, 7) and probabilities.shape == (2, 2, 7, 7)
    np.save(os.path.join(OUT, "pnet_input.npy"), x)
    np.save(os.path.join(OUT, "pnet_ort_boxes.npy"), boxes.astype(np.float32))
    np.save(os.path.join(OUT, "pnet_ort_probabilities.npy"), probabilities.astype(np.float32))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
