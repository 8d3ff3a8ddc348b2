#!/usr/bin/env python3
"""Inference speed of whole CNNs: convnet vs ONNX Runtime vs PyTorch, same machine, same run.

    ~/.venv-torch/bin/python bench/onnx_runtimes.py [--batch 1,32] [--threads N]

Needs torch, torchvision, onnx, onnxscript and onnxruntime, and a release build of convnet
(cargo build --release). For torchvision's ResNet-18 and MobileNetV2 at 3x224x224 (the
MobileNetV2 of models/mobilenet_v2.onnx when tools/fetch_pretrained.py has fetched its
weights, else an export with random weights), times one forward pass at each batch size the
same way in each engine: one warm-up pass, then the best of as many passes as fit in two
seconds (at least three), on the same seeded inputs. Prints a table of ms per batch and
images per second.
"""

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "onnx-bench"
CONVNET = ROOT / "target" / "release" / "convnet"


def best_time(run):
    run()
    best, runs, started = float("inf"), 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < 2.0:
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
        runs += 1
    return best


def export(name, net):
    path = OUT / f"{name}.onnx"
    if not path.exists():
        x = torch.zeros(1, 3, 224, 224)
        program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"],
                                    output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
        program.save(str(path))
    return path


def ours(path, batches):
    report = OUT / f"{path.stem}-convnet.json"
    subprocess.run([str(CONVNET), "bench", "--model", str(path), "--batch",
                    ",".join(map(str, batches)), "--json", str(report)], check=True)
    timings = json.loads(report.read_text())["timings"]
    return {t["batch"]: t["ms"] / 1e3 for t in timings}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", default="1,32")
    p.add_argument("--threads", type=int, default=0, help="0: the engines' defaults")
    args = p.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    torch.manual_seed(0)
    nets = {"resnet18": torchvision.models.resnet18().eval()}
    mobilenet = torchvision.models.mobilenet_v2().eval()
    real = ROOT / "models" / "mobilenet_v2.onnx"
    if real.with_name(real.name + ".data").exists():
        import sys
        sys.path.insert(0, str(ROOT / "tools"))
        from pth_to_safetensors import read_state_dict
        cache = ROOT / "target" / "pretrained" / "mobilenet_v2-b0353104.pth"
        state = {k: torch.from_numpy(v.copy()) for k, (v, _) in read_state_dict(cache).items()}
        mobilenet.load_state_dict(state)
    nets["mobilenet_v2"] = mobilenet
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {ort.__version__}")
    print(f"{'model':14} {'batch':>5} {'convnet ms':>11} {'ORT ms':>9} {'torch ms':>9} "
          f"{'ORT/ours':>9} {'torch/ours':>10}")
    for name, net in nets.items():
        path = real if name == "mobilenet_v2" and real.with_name(real.name + ".data").exists() \
            else export(name, net)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        convnet = ours(path, batches)
        for batch in batches:
            x = np.random.default_rng(batch).uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)
            t_ort = best_time(lambda: session.run(None, {"input": x}))
            with torch.inference_mode():
                xt = torch.from_numpy(x)
                t_torch = best_time(lambda: net(xt))
            t_ours = convnet[batch]
            print(f"{name:14} {batch:>5} {t_ours * 1e3:>11.2f} {t_ort * 1e3:>9.2f} "
                  f"{t_torch * 1e3:>9.2f} {t_ort / t_ours:>9.2f} {t_torch / t_ours:>10.2f}")


if __name__ == "__main__":
    main()
