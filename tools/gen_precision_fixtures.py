#!/usr/bin/env python3
"""Precision fixture for conv2d's gradients: how close PyTorch's float32 gets to float64.

Run (needs torch 2.x and numpy):

    ~/.venv-torch/bin/python tools/gen_precision_fixtures.py

It (re)writes crates/convnet-core/tests/fixtures/conv2d_precision.safetensors, which
tests/conv2d_precision.rs reads: random conv problems (inputs up to 48x48, kernels up to 7x7,
up to 10 channels per group; groups, strides, dilations, zero paddings, batches), each with
every gradient computed by PyTorch in float64, and PyTorch float32's error on it.

Error metric (the same on both sides): for a gradient `G` computed in float32 and its float64
value `T`, `max_i |G_i - T_i| / max_i |T_i|`.

Inputs are not stored (they would make the file megabytes): each tensor is regenerated from
the problem's seed by splitmix64, which the Rust test implements identically
(`uniform(seed, stream, len)` below), with 24 random bits per value, so every value is
float32-exact. Problems draw their inputs either centred (uniform in [-1, 1)) or, like images
and activations after a ReLU, positive (uniform in [0, 1)): positive inputs and output
gradients make every product of a weight-gradient sum the same sign, the case where a long
running float32 total loses most. The file stores per problem `<case>.grad_input`,
`<case>.grad_weight`, `<case>.grad_bias` (float64, PyTorch's float64 result) and, in the
header's `__metadata__`, the problem and PyTorch float32's error per gradient as JSON.

PyTorch float32 runs as it does by default on this machine (its own CPU algorithm choice, on
2 threads); the torch version is recorded in the metadata. Running the script twice produces
byte-identical files.
"""

import argparse
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "convnet-core", "tests", "fixtures", "conv2d_precision.safetensors")

PROBLEMS = 20
# What each problem steers towards: the direct path (several input channels per group), one
# input channel per filter (depthwise), 1x1 kernels (pointwise), and large planes where the
# weight gradient sums thousands of products (the direct path on 40x40 to 48x48 inputs).
KINDS = ["large", "direct", "direct", "depthwise", "direct", "pointwise", "direct", "large", "direct", "depthwise"]
# Values in the input of a problem other than the large ones.
MAX_SMALL_INPUT = 1536
MASTER_SEED = 20240610
THREADS = 2

MASK = (1 << 64) - 1


def splitmix64(seed, stream, n):
    """`n` splitmix64 outputs of the sequence started at `seed * 16 + stream` (uint64)."""
    start = ((seed << 4) + stream) & MASK
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(start) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def uniform(seed, stream, shape, positive):
    """Values `k / 2^24` for 24-bit random `k`: in [0, 1) if `positive`, else mapped to
    [-1, 1) as `2 k / 2^24 - 1`; exact in float32."""
    n = int(np.prod(shape))
    k = (splitmix64(seed, stream, n) >> np.uint64(40)).astype(np.float64)
    v = k / 2.0**24 if positive else k / 2.0**23 - 1.0
    return v.reshape(shape)


def draw_problem(rng, index):
    """One random problem; its sizes steer it towards one of the conv2d paths."""
    kind = KINDS[index % len(KINDS)]
    groups = int(rng.choice([1, 1, 1, 2, 3]))
    batch = int(rng.integers(1, 5))
    cg = int(rng.integers(2, 11))
    kg = int(rng.integers(1, 11))
    kernel = [int(rng.integers(1, 8)), int(rng.integers(1, 8))]
    stride = [int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 1, 2, 3]))]
    dilation = [int(rng.choice([1, 1, 1, 2, 3])), int(rng.choice([1, 1, 1, 2, 3]))]
    hw = [int(rng.integers(6, 33)), int(rng.integers(6, 33))]
    if kind == "depthwise":
        cg = 1
        kg = int(rng.integers(1, 4))
        groups = int(rng.integers(1, 9))
        hw = [int(rng.integers(16, 49)), int(rng.integers(16, 49))]
    elif kind == "pointwise":
        kernel, stride, dilation = [1, 1], [1, 1], [1, 1]
        hw = [int(rng.integers(16, 49)), int(rng.integers(16, 49))]
    elif kind == "large":
        # The long weight-gradient sums: large planes, a few channels, several images.
        groups, cg, batch = 1, 2, int(rng.integers(2, 5))
        kernel = [int(rng.integers(3, 8))] * 2
        stride, dilation = [1, 1], [1, 1]
        hw = [int(rng.integers(40, 49)), int(rng.integers(40, 49))]
    pad = [int(rng.integers(0, k)) if k > 1 else 0 for k in kernel]
    if kind == "pointwise":
        pad = [0, 0]
    # A kernel that fits the padded input; small inputs (the file stores the float64 input
    # gradient) except for the large problems.
    fit = [max(1, dilation[a] * (kernel[a] - 1) + 1 - 2 * pad[a]) for a in range(2)]
    hw = [max(hw[a], fit[a]) for a in range(2)]
    while kind != "large" and batch * groups * cg * hw[0] * hw[1] > MAX_SMALL_INPUT:
        smaller = [max(fit[a], hw[a] * 7 // 8) for a in range(2)]
        if smaller != hw:
            hw = smaller
        elif batch > 1:
            batch -= 1
        else:
            cg -= 1
    return {
        "kind": kind,
        "batch": batch,
        "groups": groups,
        "in_per_group": cg,
        "out_per_group": kg,
        "hw": hw,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "pad": pad,
        "seed": int(rng.integers(0, 2**31)),
        "positive_input": bool(rng.integers(0, 2)),
        "positive_grad_output": bool(rng.integers(0, 2)),
    }


def output_hw(p):
    return [
        (p["hw"][a] + 2 * p["pad"][a] - p["dilation"][a] * (p["kernel"][a] - 1) - 1) // p["stride"][a] + 1
        for a in range(2)
    ]


def gradients(p, x, w, gy, dtype):
    """(grad_input, grad_weight, grad_bias) of conv2d in `dtype`, by autograd."""
    x = torch.tensor(x, dtype=dtype, requires_grad=True)
    w = torch.tensor(w, dtype=dtype, requires_grad=True)
    b = torch.zeros(w.shape[0], dtype=dtype, requires_grad=True)
    y = F.conv2d(x, w, b, stride=p["stride"], padding=p["pad"], dilation=p["dilation"], groups=p["groups"])
    y.backward(torch.tensor(gy, dtype=dtype))
    return x.grad.double(), w.grad.double(), b.grad.double()


def rel_error(got, want):
    """max |got - want| / max |want| (0 for an all-zero `want` computed exactly)."""
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    return err / scale if scale > 0 else err


def make_case(p):
    c, k = p["groups"] * p["in_per_group"], p["groups"] * p["out_per_group"]
    ho, wo = output_hw(p)
    x = uniform(p["seed"], 0, (p["batch"], c, *p["hw"]), p["positive_input"])
    w = uniform(p["seed"], 1, (k, p["in_per_group"], *p["kernel"]), False)
    gy = uniform(p["seed"], 2, (p["batch"], k, ho, wo), p["positive_grad_output"])
    want = gradients(p, x, w, gy, torch.float64)
    got = gradients(p, x, w, gy, torch.float32)
    names = ["grad_input", "grad_weight", "grad_bias"]
    errors = {n: rel_error(g, t) for n, g, t in zip(names, got, want)}
    # Lets the test check that it regenerated the same inputs.
    checksums = {"input": float(x.sum()), "weight": float(w.sum()), "grad_output": float(gy.sum())}
    return dict(zip(names, want)), errors, checksums


def write(path, meta, tensors):
    """A deterministic safetensors file: sorted names, fixed JSON layout."""
    header = {"__metadata__": {k: meta[k] for k in sorted(meta)}}
    chunks, offset = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name].numpy().astype("<f8")).tobytes()
        header[name] = {"dtype": "F64", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT, help="file to write (default: the test's fixture)")
    ap.add_argument("--seed", type=int, default=MASTER_SEED, help="draws other problems")
    ap.add_argument("--problems", type=int, default=PROBLEMS)
    a = ap.parse_args()
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(a.seed)
    meta, tensors = {}, {}
    for i in range(a.problems):
        p = draw_problem(rng, i)
        case = f"p{i:02d}"
        grads, errors, checksums = make_case(p)
        meta[case] = json.dumps(
            {**p, "torch_f32_error": errors, "checksum": checksums, "torch": torch.__version__, "threads": THREADS},
            sort_keys=True,
            separators=(", ", ": "),
        )
        for name, t in grads.items():
            tensors[f"{case}.{name}"] = t
        print(
            f"{case} {p['kind']:9s} n{p['batch']} g{p['groups']} {p['in_per_group']}->{p['out_per_group']} "
            f"{p['hw'][0]}x{p['hw'][1]} k{p['kernel']} s{p['stride']} d{p['dilation']} p{p['pad']} "
            f"pos {int(p['positive_input'])}{int(p['positive_grad_output'])} | "
            + " ".join(f"{n} {e:.2e}" for n, e in errors.items())
        )
    write(a.out, meta, tensors)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
