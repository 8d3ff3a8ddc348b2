#!/usr/bin/env python3
"""Grad-CAM, Grad-CAM++ and saliency of the reference model, in PyTorch, as test fixtures.

    ~/.venv-torch/bin/python tools/gen_gradcam_fixtures.py [--check-package]

Reads the reference model's weights and inputs (tests/fixtures/fashion_reference_*.safetensors,
written by tools/fashion_reference.py fixture) and writes
crates/convnet/tests/fixtures/gradcam.safetensors with, for several images, classes, layers and
methods:

  "{method}/{image}/{class}/{layer}/map"      [28, 28]  the map in [0, 1] (before colouring)
  "{method}/{image}/{class}/{layer}/weights"  [K]       channel weights (CAM methods)
  "{method}/{image}/{class}/{layer}/raw"      [h, w]    relu(sum_k w_k A_k) (CAM methods)

The definitions (pytorch-grad-cam's, computed here in float64 from the float32 weights):
  score     the class logit y_c
  Grad-CAM  w_k = mean_ij dy_c/dA_kij
  Grad-CAM++ a = g^2 / (2 g^2 + sum_ij(A_k) g^3 + 1e-6) where g != 0, else 0;
            w_k = sum_ij a * relu(g)
  map       relu(sum_k w_k A_k) -> scale to [0, 1] -> bilinear resize to 28x28 (half-pixel,
            F.interpolate(align_corners=False)) -> scale to [0, 1]
  saliency  max_c |dy_c/dx| -> scale to [0, 1]
where scale(m) = (m - min) / (1e-7 + max(m - min)).

--check-package also runs pytorch-grad-cam (pip install grad-cam) on the same model and
reports the largest difference from these maps (it works in float32 and resizes with OpenCV).
"""

import argparse
import copy
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_reference import FIXTURES, FashionCNN  # noqa: E402

IMAGES = [0, 3, 5, 9, 12]
LAYERS = ["features.10", "features.7", "features.12"]


def scale(m):
    m = m - m.min()
    return m / (1e-7 + m.max())


def module(model, name):
    seq, idx = name.split(".")
    return getattr(model, seq)[int(idx)]


def class_grads(model, x, cls, layer):
    store = {}
    h = module(model, layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    x = x.clone().requires_grad_(True)
    out = model(x)
    h.remove()
    a = store["a"]
    a.retain_grad()
    out[0, cls].backward()
    return a[0].detach(), a.grad[0].detach(), x.grad[0].detach(), out[0].detach()


def cam(a, g, method):
    if method == "gradcam":
        w = g.mean(dim=(1, 2))
    else:
        g2, g3 = g * g, g * g * g
        sum_a = a.sum(dim=(1, 2))
        alpha = g2 / (2 * g2 + sum_a[:, None, None] * g3 + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        w = (alpha * F.relu(g)).sum(dim=(1, 2))
    raw = F.relu((w[:, None, None] * a).sum(dim=0))
    up = F.interpolate(scale(raw)[None, None], size=(28, 28), mode="bilinear", align_corners=False)[0, 0]
    return w, raw, scale(up)


def check_package(model32, inputs, out):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    worst = 0.0
    for method, cls_ in [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)]:
        for i in IMAGES:
            x = inputs[i:i + 1]
            c = int(model32(x).argmax())
            with cls_(model=model32, target_layers=[module(model32, "features.10")]) as explainer:
                m = explainer(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]
            ours = out[f"{method}/{i}/{c}/features.10/map"].numpy()
            worst = max(worst, float(np.abs(m - ours).max()))
    print(f"pytorch-grad-cam vs these maps: largest difference {worst:.2e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check-package", action="store_true")
    args = p.parse_args()
    weights = load_file(os.path.join(FIXTURES, "fashion_reference_weights.safetensors"))
    inputs = load_file(os.path.join(FIXTURES, "fashion_reference_io.safetensors"))["input"]
    model32 = FashionCNN()
    model32.load_state_dict(weights)
    model32.eval()
    model = copy.deepcopy(model32).double()
    out = {}
    for i in IMAGES:
        x = inputs[i:i + 1].double()
        with torch.no_grad():
            logits = model(x)[0]
        top2 = torch.topk(logits, 2).indices.tolist()
        for c in top2:
            for layer in LAYERS if c == top2[0] else LAYERS[:1]:
                a, g, gx, _ = class_grads(model, x, c, layer)
                for method in ["gradcam", "gradcam++"]:
                    w, raw, m = cam(a, g, method)
                    key = f"{method}/{i}/{c}/{layer}"
                    out[key + "/map"] = m.float()
                    out[key + "/weights"] = w.float()
                    out[key + "/raw"] = raw.float()
            _, _, gx, _ = class_grads(model, x, c, LAYERS[0])
            out[f"saliency/{i}/{c}/input/map"] = scale(gx.abs().amax(dim=0)).float()
    path = os.path.join(FIXTURES, "gradcam.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print(f"wrote {path}: {len(out)} tensors")
    if args.check_package:
        check_package(model32, inputs, out)


if __name__ == "__main__":
    main()
