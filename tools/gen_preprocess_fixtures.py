#!/usr/bin/env python3
"""torchvision's ImageNet preprocessing of the repository's photographs, as test fixtures.

    ~/.venv-torch/bin/python tools/gen_preprocess_fixtures.py

Writes crates/convnet/tests/fixtures/preprocess/:

  {photo}_resize256_crop224.png   data/{photo}.png opened with PIL, converted to RGB, then
                                  torchvision.transforms Resize(256) + CenterCrop(224)
                                  (PIL's bilinear filter, antialiased, as torchvision
                                  resizes PIL images), saved losslessly
  {photo}_resize160x200.png       Resize((160, 200)) (an exact height x width), no crop
  mobilenet_v2_torchvision.npy    float32 [2, 1000]: the softmax probabilities of
                                  torchvision's MobileNetV2 with the weights of
                                  models/mobilenet_v2.onnx(.data) (tools/fetch_pretrained.py)
                                  on chelsea and coffee through the whole pipeline:
                                  Resize(256), CenterCrop(224), ToTensor(),
                                  Normalize(ImageNet mean, std); skipped (with a message) when
                                  the weights are absent

for photo in chelsea and coffee. The weights are read from the ONNX file's initializers (the
graph keeps PyTorch's state_dict names) into torchvision.models.mobilenet_v2(); ONNX Runtime
runs the ONNX file on the same tensors as a cross-check of that loading.
"""

import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "convnet", "tests", "fixtures", "preprocess")
PHOTOS = ["chelsea", "coffee"]
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def photo(name):
    return Image.open(os.path.join(ROOT, "data", f"{name}.png")).convert("RGB")


def main():
    import torch
    import torchvision
    from torchvision import transforms as T

    os.makedirs(OUT, exist_ok=True)
    crop = T.Compose([T.Resize(256), T.CenterCrop(224)])
    exact = T.Resize((160, 200))
    for name in PHOTOS:
        crop(photo(name)).save(os.path.join(OUT, f"{name}_resize256_crop224.png"))
        exact(photo(name)).save(os.path.join(OUT, f"{name}_resize160x200.png"))

    model_path = os.path.join(ROOT, "models", "mobilenet_v2.onnx")
    if not os.path.exists(model_path + ".data"):
        print(f"{model_path}.data is absent (tools/fetch_pretrained.py): probabilities skipped")
        return
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    graph = onnx.load(model_path).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    net = torchvision.models.mobilenet_v2()
    missing, unexpected = net.load_state_dict(weights, strict=False)
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    assert not unexpected, unexpected
    net.eval()

    pipeline = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    x = torch.stack([pipeline(photo(name)) for name in PHOTOS])
    with torch.no_grad():
        logits = net(x)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    ort_logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    diff = np.abs(ort_logits - logits.numpy()).max()
    assert diff < 1e-3, f"ONNX Runtime and PyTorch differ by {diff}"
    probabilities = torch.softmax(logits, dim=1).numpy().astype(np.float32)
    np.save(os.path.join(OUT, "mobilenet_v2_torchvision.npy"), probabilities)
    classes = open(os.path.join(ROOT, "data", "imagenet_classes.txt")).read().splitlines()
    for name, p in zip(PHOTOS, probabilities):
        top = np.argsort(-p)[:3]
        print(name, ", ".join(f"{classes[i]} {100 * p[i]:.1f}%" for i in top))
    print(f"ONNX Runtime within {diff:.2e} of PyTorch's logits")


if __name__ == "__main__":
    sys.exit(main())
