#!/usr/bin/env python3
"""PyTorch CPU timings of the layers in conv-suite.json, to compare side by side with this project's bench.

Setup once (PyPI's torch wheel, about 5 GB with its CUDA libraries, which CPU runs never load):
    python3 -m venv ~/.venv-torch && ~/.venv-torch/bin/pip install torch numpy
Run:
    ~/.venv-torch/bin/python bench/torch_conv_suite.py [--threads 2] [--json torch.json]
then `convnet bench --compare torch.json` prints both side by side with the ratios.
Prints per layer: forward ms and GFLOP/s, forward+backward (input, weight and bias gradients) ms and GFLOP/s.
Run it in the same session as the project's bench: these machines are noisy, so compare ratios, not absolute times.
"""
import argparse, json, os, time
import torch

def bench(f, reps):
    f(); f()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t) / reps)
    return best

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--suite", default=os.path.join(os.path.dirname(__file__), "conv-suite.json"))
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = []
    for L in json.load(open(a.suite))["layers"]:
        x = torch.randn(L["n"], L["c"], L["h"], L["w"], requires_grad=True)
        conv = torch.nn.Conv2d(L["c"], L["k"], L["r"], L["stride"], L["pad"], L["dilation"], L["groups"])
        with torch.no_grad():
            y = conv(x)
            fwd = bench(lambda: conv(x), 10)
        ho, wo = y.shape[2], y.shape[3]
        flops = 2 * L["n"] * L["k"] * ho * wo * (L["c"] // L["groups"]) * L["r"] ** 2
        g = torch.randn_like(y)
        def step():
            x.grad = None
            conv.zero_grad()
            conv(x).backward(g)
        fb = bench(step, 5)
        r = {"name": L["name"], "fwd_ms": fwd * 1e3, "fwd_gflops": flops / fwd / 1e9,
             "fwdbwd_ms": fb * 1e3, "fwdbwd_gflops": 3 * flops / fb / 1e9}
        rows.append(r)
        print(f'{r["name"]:10s} fwd {r["fwd_ms"]:8.2f} ms {r["fwd_gflops"]:6.1f} GF/s | '
              f'fwd+bwd {r["fwdbwd_ms"]:8.2f} ms {r["fwdbwd_gflops"]:6.1f} GF/s', flush=True)
    if a.json:
        json.dump({"engine": f"torch {torch.__version__}", "threads": a.threads, "layers": rows}, open(a.json, "w"), indent=1)

if __name__ == "__main__":
    main()
