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

--ort-profile also prints where ONNX Runtime's time goes at the largest batch: its
profiler's kernel time per operator type (fused ones, e.g. FusedConv, under their names),
summed over the timed passes and given per pass, to set beside `perf record` of
`convnet bench --model`.
"""

import argparse
import collections
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
    p.add_argument("--ort-profile", action="store_true",
                   help="also ONNX Runtime's kernel time per operator type at the largest batch")
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
        if args.ort_profile:
            ort_profile(path, options, max(batches))


def conv_kinds(path):
    """Conv node name -> "Conv depthwise" / "Conv 1x1" / "Conv kxk" (ORT keeps node names)."""
    import onnx
    kinds = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        if attrs.get("group", 1) > 1:
            kinds[node.name] = "Conv depthwise"
        elif kernel == [1, 1]:
            kinds[node.name] = "Conv 1x1"
        else:
            kinds[node.name] = "Conv " + "x".join(map(str, kernel))
    return kinds


def ort_profile(path, options, batch, passes=3):
    """ONNX Runtime's kernel time per operator type, ms per pass, after one warm-up pass."""
    profiled = ort.SessionOptions()
    profiled.intra_op_num_threads = options.intra_op_num_threads
    profiled.enable_profiling = True
    profiled.profile_file_prefix = str(OUT / f"{path.stem}-ort-profile")
    session = ort.InferenceSession(str(path), profiled, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(batch).uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)
    for _ in range(passes + 1):
        session.run(None, {"input": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    # Kernel events of the timed passes: those after the warm-up run ended.
    start = runs[0]["ts"] + runs[0]["dur"]
    per_op = collections.Counter()
    kinds = conv_kinds(path)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            node = e["name"][: -len("_kernel_time")]
            per_op[kinds.get(node, e["args"]["op_name"])] += e["dur"] / 1e3 / passes
    total = sum(per_op.values())
    print(f"  ONNX Runtime, {path.stem} batch {batch}: {total:.1f} ms of kernels a pass")
    for op, ms in per_op.most_common():
        print(f"    {op:24} {ms:9.1f} ms  {100 * ms / total:5.1f}%")


if __name__ == "__main__":
    main()
