#!/usr/bin/env python3
"""Golden fixtures for convnet-core: what PyTorch computes, for the Rust tests to compare with.

Run (from anywhere; needs torch 2.x, numpy; the `safetensors` package is only used to check
the files after writing them):

    ~/.venv-torch/bin/python tools/gen_fixtures.py

It (re)writes, under crates/convnet-core/tests/fixtures/:

    conv2d.safetensors       conv2d forward and all three gradients  (tests/golden_conv2d.rs)
    pool.safetensors         max / avg / adaptive / global pooling     (tests/golden_pool.rs)
    activation.safetensors   ReLU, LeakyReLU, ELU, tanh, sigmoid, PReLU (tests/golden_activation.rs)
    linear.safetensors       F.linear forward and all three gradients   (tests/golden_linear.rs)
    batch_norm.safetensors   F.batch_norm, training and eval, forward, batch statistics and
                             every gradient                             (tests/golden_batch_norm.rs)
    loss.safetensors         cross-entropy (label smoothing), MSE, softmax, log-softmax
                                                                        (tests/golden_loss.rs)

Layout of each file: one *case* per named configuration. Tensors are called
"<case>.<name>": `input`, `weight`, `bias`, `grad_output` (the inputs) and `output`,
`grad_input`, `grad_weight`, `grad_bias` (what PyTorch computed), plus `indices` (int64,
flat `h * W + w` within the input plane, as `return_indices=True`) for max pooling; batch
norm adds `mean`, `invstd`, `var_unbiased` (training) and `running_mean`, `running_var`
(evaluation); losses have `target` (int64 class indices for cross-entropy), `loss` (shape
[1]) and `grad_input` (d loss / d input, no `grad_output`). Every other tensor is float32. The header's `__metadata__` maps each case name to a JSON string
with its parameters (its keys are exactly the case names), e.g.
`{"op": "conv2d", "stride": [2, 1], "padding": "explicit", "pad": [top, bottom, left, right],
...}`.

How the values are made:
- Inputs, weights and grad_output are drawn in float32 from a generator seeded by a CRC32 of
  the case name (so adding a case changes no other case), then converted with `.double()`;
  PyTorch computes the forward pass and, by autograd on `loss = (output * grad_output).sum()`,
  every gradient in float64; the results are stored rounded to float32.
- Inputs of ReLU-family activations are kept at least 0.05 away from 0 (the kink).
- Float parameters the Rust side reads as f32 (batch-norm `eps`, `label_smoothing`) are
  rounded to float32 before PyTorch uses them, so both sides compute with the same value.

Determinism: fixed seeds, one thread, and the safetensors files are written by this script
(sorted names, JSON with a fixed key order) rather than by `safetensors.save_file`, whose
`__metadata__` order follows a Rust HashMap and changes from run to run. Running the script
twice produces byte-identical files; the script checks the files load with the `safetensors`
package (when installed) and prints their sizes.
"""

import json
import math
import os
import struct
import sys
import warnings
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "crates", "convnet-core", "tests", "fixtures")

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
# nn.Conv2d(padding='same') with an even kernel warns that it copies the input: expected.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


class FixtureFile:
    """Cases of one op family, written as a deterministic safetensors file."""

    def __init__(self, name):
        self.name = name
        self.tensors = {}  # full name -> (dtype tag, np.ndarray)
        self.meta = {}  # case -> JSON string

    def case(self, case, params, tensors):
        """Add one case: `params` (a dict, stored as JSON), `tensors` name -> torch tensor."""
        if case in self.meta:
            raise ValueError(f"duplicate case {case}")
        if "." in case:
            raise ValueError(f"case names must not contain '.': {case}")
        self.meta[case] = json.dumps(params, sort_keys=True, separators=(", ", ": "))
        for tname, t in tensors.items():
            t = t.detach()
            if t.dtype == torch.int64:
                arr = t.cpu().numpy().astype("<i8")
                tag = "I64"
            else:
                arr = t.to(torch.float32).cpu().numpy().astype("<f4")
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{case}.{tname} is not finite")
                tag = "F32"
            self.tensors[f"{case}.{tname}"] = (tag, np.ascontiguousarray(arr))

    def write(self, directory):
        header = {"__metadata__": {k: self.meta[k] for k in sorted(self.meta)}}
        chunks = []
        offset = 0
        for name in sorted(self.tensors):
            tag, arr = self.tensors[name]
            data = arr.tobytes()
            header[name] = {
                "dtype": tag,
                "shape": list(arr.shape),
                "data_offsets": [offset, offset + len(data)],
            }
            chunks.append(data)
            offset += len(data)
        head = json.dumps(header, separators=(",", ":")).encode("utf-8")
        head += b" " * (-len(head) % 8)  # the format allows space padding; keeps data aligned
        path = os.path.join(directory, f"{self.name}.safetensors")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for c in chunks:
                f.write(c)
        os.replace(tmp, path)
        return path


def check_written(path, fixture):
    """Load `path` back (with the safetensors package when available) and compare."""
    try:
        from safetensors import safe_open
    except ImportError:
        print("  (safetensors not installed: skipped the read-back check)")
        return
    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == fixture.meta, "metadata differs after reading back"
        names = set(f.keys())
        assert names == set(fixture.tensors), "tensor names differ after reading back"
        for name in names:
            assert np.array_equal(f.get_tensor(name), fixture.tensors[name][1]), name


# ---------------------------------------------------------------------------------------
# Random inputs
# ---------------------------------------------------------------------------------------


def generator(case):
    g = torch.Generator()
    g.manual_seed(zlib.crc32(case.encode("utf-8")))
    return g


def randn(g, shape, scale=1.0):
    """float32 normal values (float32-representable), as float64 for the computation."""
    return (torch.randn(shape, generator=g, dtype=torch.float32) * scale).double()


def randn_away_from_zero(g, shape, margin=0.05, scale=1.0):
    """Like `randn`, but |x| >= margin (values near 0 are pushed out, keeping their sign)."""
    x = torch.randn(shape, generator=g, dtype=torch.float32) * scale
    sign = torch.where(x < 0, -1.0, 1.0)
    x = torch.where(x.abs() < margin, sign * (margin + x.abs()), x)
    return x.double()


def leaf(t):
    return t.detach().clone().requires_grad_(True)


# ---------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------

TORCH_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
                  "circular": "circular"}


def conv_params(stride=(1, 1), padding="valid", pad=None, dilation=(1, 1), groups=1,
                padding_mode="zeros", mode="cross_correlation", bias=True):
    p = {
        "op": "conv2d",
        "stride": list(stride),
        "padding": padding,  # "valid" | "same" | "explicit"
        "dilation": list(dilation),
        "groups": groups,
        "padding_mode": padding_mode,  # zeros | reflect | replicate | circular
        "mode": mode,  # cross_correlation | convolution
        "bias": bias,
    }
    if padding == "explicit":
        p["pad"] = list(pad)  # [top, bottom, left, right]
    else:
        assert pad is None
    return p


def torch_conv2d(x, w, b, p):
    """PyTorch's conv2d for the parameters `p`, differentiable w.r.t. x, w and b."""
    w_eff = torch.flip(w, [2, 3]) if p["mode"] == "convolution" else w
    c_in = x.shape[1]
    c_out, _, kh, kw = w.shape
    stride, dilation, groups = tuple(p["stride"]), tuple(p["dilation"]), p["groups"]
    if p["padding"] == "explicit":
        t, bo, le, r = p["pad"]
        if t == bo and le == r:
            padding = (t, le)  # nn.Conv2d takes symmetric padding itself
        else:
            # Asymmetric: pad first (as nn.Conv2d does internally for non-zero modes).
            x_p = F.pad(x, (le, r, t, bo), mode=TORCH_PAD_MODE[p["padding_mode"]])
            return F.conv2d(x_p, w_eff, b, stride, 0, dilation, groups)
    else:
        padding = p["padding"]  # 'valid' or 'same', PyTorch's own rule for both
    layer = nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=b is not None,
                      padding_mode=p["padding_mode"], dtype=torch.float64)
    params = {"weight": w_eff}
    if b is not None:
        params["bias"] = b
    return functional_call(layer, params, (x,))


def check_same_rule(x, w, b, p, y):
    """Self-check of the rule the Rust side implements: 'same' pads d*(k-1) in total per
    axis, half before, the odd remainder after (bottom/right); output size = input size."""
    pad = []
    for axis in (0, 1):
        total = p["dilation"][axis] * (w.shape[2 + axis] - 1)
        pad += [total // 2, total - total // 2]
    explicit = dict(p, padding="explicit", pad=pad)
    y2 = torch_conv2d(x, w, b, explicit)
    assert y.shape[2:] == x.shape[2:], (y.shape, x.shape)
    assert torch.allclose(y, y2, rtol=0, atol=1e-12), "'same' rule differs from PyTorch"


def conv_case(ff, case, n, c_in, hw, c_out, kernel, x=None, w=None, **kw):
    p = conv_params(**kw)
    g = generator(case)
    if x is None:
        x = randn(g, (n, c_in, *hw))
    if w is None:
        w = randn(g, (c_out, c_in // p["groups"], *kernel), scale=0.5)
    b = randn(g, (c_out,)) if p["bias"] else None
    xl, wl = leaf(x), leaf(w)
    bl = leaf(b) if b is not None else None
    y = torch_conv2d(xl, wl, bl, p)
    if p["padding"] == "same":
        check_same_rule(x, w, b, p, y)
    gy = randn(g, tuple(y.shape))
    (y * gy).sum().backward()
    tensors = {"input": x, "weight": w, "output": y, "grad_output": gy,
               "grad_input": xl.grad, "grad_weight": wl.grad}
    if b is not None:
        tensors["bias"] = b
        tensors["grad_bias"] = bl.grad
    ff.case(case, p, tensors)
    return y


def conv_cases():
    ff = FixtureFile("conv2d")
    E = "explicit"
    # Basics: multi-channel input, several filters, bias or not, batch.
    conv_case(ff, "basic_3x3", 1, 3, (6, 6), 4, (3, 3))
    conv_case(ff, "basic_3x3_no_bias", 1, 3, (6, 5), 4, (3, 3), bias=False)
    conv_case(ff, "batch2_3x3_pad1", 2, 2, (5, 5), 3, (3, 3), padding=E, pad=(1, 1, 1, 1))
    conv_case(ff, "kernel_equals_input", 2, 2, (5, 5), 3, (5, 5))
    conv_case(ff, "padding_wider_than_kernel", 1, 2, (4, 4), 2, (2, 2), padding=E,
              pad=(3, 3, 2, 2))
    # Stride.
    conv_case(ff, "stride2_pad1", 1, 2, (7, 7), 3, (3, 3), stride=(2, 2), padding=E,
              pad=(1, 1, 1, 1))
    conv_case(ff, "stride_1x2", 1, 2, (6, 7), 3, (3, 3), stride=(1, 2))
    conv_case(ff, "stride_3x1_pad_1x0", 2, 2, (8, 5), 2, (3, 2), stride=(3, 1), padding=E,
              pad=(1, 1, 0, 0))
    conv_case(ff, "stride3_gt_kernel2", 1, 3, (8, 8), 2, (2, 2), stride=(3, 3))
    conv_case(ff, "stride_gt_kernel_per_axis", 1, 2, (9, 7), 3, (2, 1), stride=(4, 3),
              bias=False)
    # Explicit asymmetric padding, valid.
    conv_case(ff, "explicit_asym_pad", 1, 2, (5, 6), 3, (3, 3), padding=E, pad=(1, 0, 2, 1))
    conv_case(ff, "explicit_asym_pad_stride2", 2, 2, (6, 5), 2, (3, 3), stride=(2, 2),
              padding=E, pad=(0, 2, 1, 0))
    conv_case(ff, "valid_5x5", 1, 2, (7, 6), 3, (5, 5), padding="valid")
    # 'same': odd and even kernels (extra row/column bottom/right), with dilation.
    conv_case(ff, "same_3x3", 1, 3, (5, 6), 2, (3, 3), padding="same")
    conv_case(ff, "same_5x5_no_bias", 1, 2, (6, 6), 3, (5, 5), padding="same", bias=False)
    conv_case(ff, "same_even_2x2", 1, 2, (5, 5), 3, (2, 2), padding="same")
    conv_case(ff, "same_even_4x4", 2, 2, (6, 5), 2, (4, 4), padding="same")
    conv_case(ff, "same_even_odd_2x3", 1, 3, (5, 6), 2, (2, 3), padding="same")
    conv_case(ff, "same_dilation2_3x3", 1, 2, (7, 7), 2, (3, 3), padding="same",
              dilation=(2, 2))
    conv_case(ff, "same_even_dilated_2x4_d3x1", 1, 2, (7, 7), 2, (2, 4), padding="same",
              dilation=(3, 1))
    # Padding modes.
    for mode in ("reflect", "replicate", "circular"):
        conv_case(ff, f"{mode}_pad1", 1, 2, (5, 6), 3, (3, 3), padding=E, pad=(1, 1, 1, 1),
                  padding_mode=mode)
    conv_case(ff, "reflect_asym_pad", 1, 2, (5, 6), 2, (3, 3), padding=E, pad=(2, 0, 1, 2),
              padding_mode="reflect")
    conv_case(ff, "replicate_asym_pad", 1, 2, (4, 5), 2, (3, 2), padding=E, pad=(0, 3, 2, 1),
              padding_mode="replicate")
    conv_case(ff, "circular_asym_pad", 1, 2, (5, 4), 2, (3, 3), padding=E, pad=(0, 2, 2, 1),
              padding_mode="circular")
    conv_case(ff, "replicate_stride2_pad2", 2, 2, (6, 6), 2, (3, 3), stride=(2, 2),
              padding=E, pad=(2, 2, 2, 2), padding_mode="replicate")
    conv_case(ff, "reflect_same_even_4x2", 1, 2, (6, 5), 2, (4, 2), padding="same",
              padding_mode="reflect")
    conv_case(ff, "circular_same_dilation2", 1, 2, (6, 7), 2, (3, 3), padding="same",
              dilation=(2, 2), padding_mode="circular")
    conv_case(ff, "replicate_same_even_2x2", 1, 3, (4, 4), 2, (2, 2), padding="same",
              padding_mode="replicate", bias=False)
    # Dilation.
    conv_case(ff, "dilation2", 1, 2, (7, 7), 3, (3, 3), dilation=(2, 2))
    conv_case(ff, "dilation_2x1_pad", 1, 2, (7, 6), 2, (3, 3), dilation=(2, 1), padding=E,
              pad=(2, 2, 1, 1))
    conv_case(ff, "dilation3_stride2", 2, 2, (9, 9), 2, (2, 3), dilation=(3, 2),
              stride=(2, 2))
    # Groups.
    conv_case(ff, "groups2", 1, 4, (5, 5), 6, (3, 3), groups=2)
    conv_case(ff, "groups3", 2, 6, (5, 4), 3, (3, 3), groups=3, padding=E, pad=(1, 1, 1, 1))
    conv_case(ff, "groups2_stride_pad_dilation", 1, 4, (8, 7), 4, (3, 2), groups=2,
              stride=(2, 1), padding=E, pad=(1, 2, 0, 1), dilation=(1, 2))
    conv_case(ff, "depthwise", 1, 4, (6, 6), 4, (3, 3), groups=4, padding=E, pad=(1, 1, 1, 1))
    conv_case(ff, "depthwise_multiplier2", 2, 3, (5, 6), 6, (3, 3), groups=3)
    conv_case(ff, "depthwise_stride2_asym_pad", 1, 3, (7, 6), 3, (3, 3), groups=3,
              stride=(2, 2), padding=E, pad=(1, 0, 0, 1), bias=False)
    conv_case(ff, "depthwise_same_even_dilation", 1, 2, (6, 6), 4, (2, 2), groups=2,
              padding="same", dilation=(2, 2))
    # 1x1.
    conv_case(ff, "pointwise_1x1", 1, 5, (4, 4), 4, (1, 1))
    conv_case(ff, "pointwise_1x1_batch2_no_bias", 2, 3, (3, 5), 6, (1, 1), bias=False)
    conv_case(ff, "pointwise_1x1_groups2", 1, 4, (3, 3), 6, (1, 1), groups=2)
    conv_case(ff, "pointwise_1x1_pad1_stride2", 1, 3, (5, 4), 2, (1, 1), stride=(2, 2),
              padding=E, pad=(1, 1, 1, 1))
    # Non-square kernels.
    conv_case(ff, "nonsquare_2x4", 1, 2, (5, 7), 3, (2, 4))
    conv_case(ff, "nonsquare_5x1_pad", 1, 2, (6, 4), 2, (5, 1), padding=E, pad=(2, 2, 0, 0))
    # ConvMode::Convolution: torch conv2d with torch.flip(w, [2, 3]).
    C = "convolution"
    conv_case(ff, "convolution_3x3", 1, 2, (5, 5), 3, (3, 3), mode=C)
    conv_case(ff, "convolution_2x3_stride2_asym_pad", 1, 2, (6, 7), 2, (2, 3), mode=C,
              stride=(2, 2), padding=E, pad=(1, 0, 0, 2))
    conv_case(ff, "convolution_groups2_reflect", 1, 4, (5, 5), 4, (3, 3), mode=C, groups=2,
              padding=E, pad=(1, 1, 1, 1), padding_mode="reflect")
    conv_case(ff, "convolution_depthwise_same_even", 1, 3, (5, 5), 3, (2, 4), mode=C,
              groups=3, padding="same")
    conv_case(ff, "convolution_batch2_everything", 2, 4, (7, 6), 6, (3, 2), mode=C, groups=2,
              stride=(2, 1), dilation=(1, 2), padding=E, pad=(2, 1, 1, 1),
              padding_mode="reflect")
    # One input channel, many filters.
    conv_case(ff, "single_channel_8_filters", 1, 1, (6, 6), 8, (3, 3))
    conv_case(ff, "single_channel_8_filters_stride_pad", 2, 1, (7, 5), 8, (3, 3),
              stride=(2, 1), padding=E, pad=(1, 1, 0, 2))
    # The documentation's worked examples.
    patch = torch.tensor([[10, 20, 30], [15, 25, 35], [20, 30, 40]], dtype=torch.float32)
    edge = torch.tensor([[1, 0, -1]] * 3, dtype=torch.float32)
    y = conv_case(ff, "doc_vertical_edge", 1, 1, (3, 3), 1, (3, 3),
                  x=patch.reshape(1, 1, 3, 3).double(), w=edge.reshape(1, 1, 3, 3).double(),
                  bias=False)
    assert y.item() == -60.0, y
    y = conv_case(ff, "doc_32x32x3_six_5x5_same", 1, 3, (32, 32), 6, (5, 5), padding="same")
    assert tuple(y.shape) == (1, 6, 32, 32), y.shape
    return ff


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------


def pool_params(op, kernel, stride=None, padding=(0, 0), dilation=(1, 1), ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    p = {"op": op, "kernel": list(kernel), "stride": list(stride or kernel),
         "padding": list(padding), "ceil_mode": ceil_mode}
    if op == "max_pool2d":
        p["dilation"] = list(dilation)
    else:
        assert dilation == (1, 1)
        p["count_include_pad"] = count_include_pad
        p["divisor_override"] = divisor_override
    return p


def record_pool(ff, case, params, x, fn):
    """Run `fn(x) -> output or (output, indices)` with autograd and store the case."""
    g = generator(case + "/grad")
    xl = leaf(x)
    res = fn(xl)
    y, idx = res if isinstance(res, tuple) else (res, None)
    gy = randn(g, tuple(y.shape))
    (y * gy).sum().backward()
    tensors = {"input": x, "output": y, "grad_output": gy, "grad_input": xl.grad}
    if idx is not None:
        tensors["indices"] = idx
    ff.case(case, params, tensors)


def ties(g, shape, levels=3):
    """float32 small integers (many equal values), as float64."""
    return torch.randint(0, levels, shape, generator=g).to(torch.float32).double()


def max_case(ff, case, shape, x=None, **kw):
    p = pool_params("max_pool2d", **kw)
    x = randn(generator(case), shape) if x is None else x
    record_pool(ff, case, p, x, lambda t: F.max_pool2d(
        t, p["kernel"], p["stride"], p["padding"], p["dilation"], p["ceil_mode"],
        return_indices=True))


def avg_case(ff, case, shape, **kw):
    p = pool_params("avg_pool2d", **kw)
    x = randn(generator(case), shape)
    record_pool(ff, case, p, x, lambda t: F.avg_pool2d(
        t, p["kernel"], p["stride"], p["padding"], p["ceil_mode"], p["count_include_pad"],
        p["divisor_override"]))


def adaptive_case(ff, case, op, shape, out, x=None):
    p = {"op": op, "output_size": list(out)}
    x = randn(generator(case), shape) if x is None else x
    if op == "adaptive_avg_pool2d":
        fn = lambda t: F.adaptive_avg_pool2d(t, out)  # noqa: E731
    else:
        fn = lambda t: F.adaptive_max_pool2d(t, out, return_indices=True)  # noqa: E731
    record_pool(ff, case, p, x, fn)


def global_case(ff, case, op, shape, x=None):
    x = randn(generator(case), shape) if x is None else x
    if op == "global_avg_pool2d":
        fn = lambda t: F.adaptive_avg_pool2d(t, 1)  # noqa: E731
    else:
        fn = lambda t: F.adaptive_max_pool2d(t, 1, return_indices=True)  # noqa: E731
    record_pool(ff, case, {"op": op}, x, fn)


def pool_cases():
    ff = FixtureFile("pool")
    # Max pooling.
    max_case(ff, "max_k2", (1, 2, 6, 6), kernel=(2, 2))
    max_case(ff, "max_k2_odd_input", (2, 2, 5, 7), kernel=(2, 2))
    max_case(ff, "max_k3_s2", (1, 2, 7, 7), kernel=(3, 3), stride=(2, 2))
    max_case(ff, "max_k3_s2_pad1", (2, 2, 6, 6), kernel=(3, 3), stride=(2, 2), padding=(1, 1))
    max_case(ff, "max_k3_s1_overlap", (1, 2, 5, 5), kernel=(3, 3), stride=(1, 1))
    max_case(ff, "max_k2_dilation2", (1, 2, 6, 7), kernel=(2, 2), stride=(1, 1),
             dilation=(2, 2))
    max_case(ff, "max_k3_dilation_2x1_pad", (1, 1, 7, 6), kernel=(3, 3), stride=(2, 1),
             padding=(1, 1), dilation=(2, 1))
    max_case(ff, "max_ceil_mode", (1, 2, 5, 5), kernel=(2, 2), stride=(2, 2), ceil_mode=True)
    # (4 - 1) * 2 >= 5 + 1: ceil_mode drops the window that would start in the padding.
    max_case(ff, "max_ceil_mode_pad_drops_last", (1, 2, 5, 5), kernel=(2, 2), stride=(2, 2),
             padding=(1, 1), ceil_mode=True)
    max_case(ff, "max_ceil_mode_k3_s2_pad1", (1, 2, 6, 6), kernel=(3, 3), stride=(2, 2),
             padding=(1, 1), ceil_mode=True)
    max_case(ff, "max_nonsquare", (1, 2, 6, 7), kernel=(2, 3), stride=(1, 2), padding=(1, 1))
    max_case(ff, "max_ties_k2", (1, 2, 6, 6), x=ties(generator("max_ties_k2"), (1, 2, 6, 6)),
             kernel=(2, 2))
    max_case(ff, "max_ties_k3_s1", (1, 2, 5, 6),
             x=ties(generator("max_ties_k3_s1"), (1, 2, 5, 6)), kernel=(3, 3), stride=(1, 1))
    max_case(ff, "max_ties_constant_pad1", (1, 1, 4, 4),
             x=torch.full((1, 1, 4, 4), -1.5, dtype=torch.float64), kernel=(3, 3),
             stride=(2, 2), padding=(1, 1))
    # Average pooling.
    avg_case(ff, "avg_k2", (1, 2, 6, 6), kernel=(2, 2))
    avg_case(ff, "avg_k3_s2_pad1_include_pad", (2, 2, 6, 5), kernel=(3, 3), stride=(2, 2),
             padding=(1, 1), count_include_pad=True)
    avg_case(ff, "avg_k3_s2_pad1_exclude_pad", (2, 2, 6, 5), kernel=(3, 3), stride=(2, 2),
             padding=(1, 1), count_include_pad=False)
    avg_case(ff, "avg_ceil_mode", (1, 2, 5, 5), kernel=(2, 2), stride=(2, 2), ceil_mode=True)
    avg_case(ff, "avg_ceil_mode_pad_include_pad", (1, 2, 6, 6), kernel=(3, 3),
             stride=(2, 2), padding=(1, 1), ceil_mode=True, count_include_pad=True)
    avg_case(ff, "avg_ceil_mode_pad_exclude_pad", (1, 2, 6, 6), kernel=(3, 3),
             stride=(2, 2), padding=(1, 1), ceil_mode=True, count_include_pad=False)
    avg_case(ff, "avg_ceil_mode_pad_drops_last", (1, 1, 5, 5), kernel=(2, 2), stride=(2, 2),
             padding=(1, 1), ceil_mode=True)
    avg_case(ff, "avg_divisor_override", (1, 2, 6, 6), kernel=(3, 3), stride=(2, 2),
             padding=(1, 1), divisor_override=4)
    avg_case(ff, "avg_nonsquare", (1, 2, 5, 7), kernel=(2, 3), stride=(1, 2), padding=(1, 1),
             count_include_pad=False)
    # Adaptive.
    adaptive_case(ff, "adaptive_avg_6_to_3", "adaptive_avg_pool2d", (1, 2, 6, 6), (3, 3))
    adaptive_case(ff, "adaptive_avg_7_to_3", "adaptive_avg_pool2d", (2, 2, 7, 7), (3, 3))
    adaptive_case(ff, "adaptive_avg_5x7_to_2x3", "adaptive_avg_pool2d", (1, 3, 5, 7), (2, 3))
    adaptive_case(ff, "adaptive_avg_3x4_to_5x6", "adaptive_avg_pool2d", (1, 2, 3, 4), (5, 6))
    adaptive_case(ff, "adaptive_max_7_to_3", "adaptive_max_pool2d", (2, 2, 7, 7), (3, 3))
    adaptive_case(ff, "adaptive_max_5x7_to_2x3", "adaptive_max_pool2d", (1, 3, 5, 7), (2, 3))
    adaptive_case(ff, "adaptive_max_3x3_to_4x5", "adaptive_max_pool2d", (1, 2, 3, 3), (4, 5))
    adaptive_case(ff, "adaptive_max_ties_6x5_to_4x3", "adaptive_max_pool2d", (1, 2, 6, 5),
                  (4, 3), x=ties(generator("adaptive_max_ties_6x5_to_4x3"), (1, 2, 6, 5)))
    # Global (= adaptive to 1x1).
    global_case(ff, "global_avg", "global_avg_pool2d", (2, 3, 5, 4))
    global_case(ff, "global_max", "global_max_pool2d", (2, 3, 5, 4))
    global_case(ff, "global_max_ties", "global_max_pool2d", (1, 3, 4, 4),
                x=ties(generator("global_max_ties"), (1, 3, 4, 4), levels=2))
    return ff


# ---------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------


def activation_case(ff, case, kind, shape, x=None, **args):
    p = {"op": "activation", "kind": kind, **args}
    g = generator(case)
    x = randn_away_from_zero(g, shape, scale=2.0) if x is None else x
    fns = {
        "relu": lambda t: F.relu(t),
        "leaky_relu": lambda t: F.leaky_relu(t, args.get("negative_slope", 0.01)),
        "elu": lambda t: F.elu(t, args.get("alpha", 1.0)),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
    }
    xl = leaf(x)
    y = fns[kind](xl)
    gy = randn(g, tuple(y.shape))
    (y * gy).sum().backward()
    ff.case(case, p, {"input": x, "output": y, "grad_output": gy, "grad_input": xl.grad})


def prelu_case(ff, case, shape, weight):
    g = generator(case)
    x = randn_away_from_zero(g, shape, scale=2.0)
    w = weight.double()
    xl, wl = leaf(x), leaf(w)
    y = F.prelu(xl, wl)
    gy = randn(g, tuple(y.shape))
    (y * gy).sum().backward()
    ff.case(case, {"op": "prelu", "num_parameters": int(w.numel())},
            {"input": x, "weight": w, "output": y, "grad_output": gy, "grad_input": xl.grad,
             "grad_weight": wl.grad})


def large_values(shape):
    """Values of large magnitude (+-30, +-20, ...) around the saturation of tanh/sigmoid."""
    vals = [-30.0, 30.0, -20.0, 20.0, -12.5, 12.5, -8.0, 8.0, -3.0, 3.0, -0.5, 0.5]
    n = math.prod(shape)
    return torch.tensor([vals[i % len(vals)] for i in range(n)],
                        dtype=torch.float32).reshape(shape).double()


def activation_cases():
    ff = FixtureFile("activation")
    activation_case(ff, "relu", "relu", (2, 3, 4, 5))
    activation_case(ff, "leaky_relu_default", "leaky_relu", (2, 3, 4, 4), negative_slope=0.01)
    activation_case(ff, "leaky_relu_0_2", "leaky_relu", (1, 3, 5, 5), negative_slope=0.2)
    activation_case(ff, "elu_alpha_1", "elu", (2, 3, 4, 5), alpha=1.0)
    activation_case(ff, "elu_alpha_0_5", "elu", (1, 3, 5, 5), alpha=0.5)
    activation_case(ff, "elu_large_negative", "elu", (1, 2, 2, 3), x=large_values((1, 2, 2, 3)),
                    alpha=1.0)
    activation_case(ff, "tanh", "tanh", (2, 3, 4, 5))
    activation_case(ff, "tanh_large", "tanh", (1, 2, 2, 3), x=large_values((1, 2, 2, 3)))
    activation_case(ff, "sigmoid", "sigmoid", (2, 3, 4, 5))
    activation_case(ff, "sigmoid_large", "sigmoid", (1, 2, 2, 3), x=large_values((1, 2, 2, 3)))
    prelu_case(ff, "prelu_single_slope", (2, 3, 4, 4), torch.tensor([0.25]))
    prelu_case(ff, "prelu_per_channel", (2, 4, 3, 5),
               torch.tensor([0.25, -0.1, 0.5, 1.5], dtype=torch.float32))
    return ff


# ---------------------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------------------


def linear_case(ff, case, n, in_features, out_features, bias=True):
    g = generator(case)
    x = randn(g, (n, in_features))
    w = randn(g, (out_features, in_features), scale=0.5)
    b = randn(g, (out_features,)) if bias else None
    xl, wl = leaf(x), leaf(w)
    bl = leaf(b) if bias else None
    y = F.linear(xl, wl, bl)
    gy = randn(g, tuple(y.shape))
    (y * gy).sum().backward()
    tensors = {"input": x, "weight": w, "output": y, "grad_output": gy,
               "grad_input": xl.grad, "grad_weight": wl.grad}
    if bias:
        tensors["bias"] = b
        tensors["grad_bias"] = bl.grad
    ff.case(case, {"op": "linear", "in_features": in_features, "out_features": out_features,
                   "bias": bias}, tensors)


def linear_cases():
    ff = FixtureFile("linear")
    linear_case(ff, "n1_bias", 1, 5, 3)
    linear_case(ff, "n1_no_bias", 1, 4, 6, bias=False)
    linear_case(ff, "batch4_bias", 4, 7, 5)
    linear_case(ff, "batch6_no_bias", 6, 3, 8, bias=False)
    linear_case(ff, "batch32_64_to_24", 32, 64, 24)
    linear_case(ff, "in_features_1", 3, 1, 4)
    linear_case(ff, "out_features_1", 5, 6, 1)
    return ff


# ---------------------------------------------------------------------------------------
# Batch norm
# ---------------------------------------------------------------------------------------


def f32(v):
    """`v` rounded to float32 (as the Rust side reads a JSON number into an f32)."""
    return float(np.float32(v))


def bn_affine_params(g, c, weight, bias):
    """weight around 1 and bias around 0 (float32 values, as float64), or None."""
    w = (torch.randn(c, generator=g, dtype=torch.float32) * 0.5 + 1.0).double() if weight \
        else None
    b = randn(g, (c,)) if bias else None
    return w, b


def bn_grads(x, y_fn, w, b, g, shape):
    """Autograd through `y_fn(x, w, b)`. With a weight but no bias, a zero bias is still
    differentiated: the Rust API returns `grad_bias` whenever a weight is given."""
    xl = leaf(x)
    wl = leaf(w) if w is not None else None
    b_eff = b if b is not None else (torch.zeros_like(w) if w is not None else None)
    bl = leaf(b_eff) if b_eff is not None else None
    y = y_fn(xl, wl, bl)
    gy = randn(g, shape)
    (y * gy).sum().backward()
    tensors = {"output": y, "grad_output": gy, "grad_input": xl.grad}
    if w is not None:
        tensors["weight"] = w
        tensors["grad_weight"] = wl.grad
        tensors["grad_bias"] = bl.grad
    if b is not None:
        tensors["bias"] = b
    return tensors


def bn_train_case(ff, case, shape, eps=1e-5, weight=True, bias=True, x=None):
    g = generator(case)
    c = shape[1]
    x = randn(g, shape) if x is None else x
    w, b = bn_affine_params(g, c, weight, bias)
    e = f32(eps)
    # momentum=1 makes the running estimates exactly PyTorch's batch mean and unbiased
    # variance.
    running_mean = torch.zeros(c, dtype=torch.float64)
    running_var = torch.zeros(c, dtype=torch.float64)
    tensors = bn_grads(x, lambda t, wt, bt: F.batch_norm(
        t, running_mean, running_var, wt, bt, training=True, momentum=1.0, eps=e), w, b, g,
        shape)
    _, save_mean, save_invstd = torch.native_batch_norm(x, w, b, None, None, True, 0.0, e)
    dims = [0] + list(range(2, len(shape)))
    assert torch.allclose(save_mean, x.mean(dims), rtol=0, atol=1e-12)
    biased = x.var(dims, unbiased=False)
    assert torch.allclose(save_invstd, 1 / torch.sqrt(biased + e), rtol=1e-12, atol=0)
    assert torch.allclose(running_mean, save_mean, rtol=0, atol=1e-12)
    assert torch.allclose(running_var, x.var(dims, unbiased=True), rtol=1e-12, atol=1e-12)
    tensors.update({"input": x, "mean": save_mean, "invstd": save_invstd,
                    "var_unbiased": running_var})
    ff.case(case, {"op": "batch_norm_train", "eps": eps, "weight": weight, "bias": bias},
            tensors)


def bn_eval_case(ff, case, shape, eps=1e-5, weight=True, bias=True):
    g = generator(case)
    c = shape[1]
    x = randn(g, shape)
    w, b = bn_affine_params(g, c, weight, bias)
    running_mean = randn(g, (c,), scale=0.5)
    running_var = (torch.rand(c, generator=g, dtype=torch.float32) * 1.5 + 0.25).double()
    e = f32(eps)
    tensors = bn_grads(x, lambda t, wt, bt: F.batch_norm(
        t, running_mean, running_var, wt, bt, training=False, eps=e), w, b, g, shape)
    tensors.update({"input": x, "running_mean": running_mean, "running_var": running_var})
    ff.case(case, {"op": "batch_norm_eval", "eps": eps, "weight": weight, "bias": bias},
            tensors)


def batch_norm_cases():
    ff = FixtureFile("batch_norm")
    # Training, BatchNorm1d: [N, C] and [N, C, L] (rows of short planes; L >= 16: planes).
    bn_train_case(ff, "train_1d_affine", (8, 5))
    bn_train_case(ff, "train_1d_no_affine", (6, 4), weight=False, bias=False)
    bn_train_case(ff, "train_1d_batch2", (2, 3))  # M = 2, the smallest PyTorch accepts
    bn_train_case(ff, "train_1d_ncl_affine", (4, 3, 7))
    bn_train_case(ff, "train_1d_ncl_long_affine", (2, 3, 20))
    # Training, BatchNorm2d: [N, C, H, W].
    bn_train_case(ff, "train_2d_affine", (4, 3, 5, 6))
    bn_train_case(ff, "train_2d_no_affine", (3, 4, 4, 5), weight=False, bias=False)
    bn_train_case(ff, "train_2d_small_planes", (4, 2, 2, 3))
    bn_train_case(ff, "train_2d_eps_0_1", (2, 3, 4, 4), eps=0.1)
    bn_train_case(ff, "train_2d_eps_1e_3_no_affine", (3, 2, 5, 5), eps=1e-3, weight=False,
                  bias=False)
    bn_train_case(ff, "train_2d_batch1", (1, 3, 4, 5))
    bn_train_case(ff, "train_2d_weight_only", (2, 3, 4, 4), bias=False)
    bn_train_case(ff, "train_2d_bias_only", (2, 3, 4, 4), weight=False)
    shifted = (torch.randn((4, 2, 6, 6), generator=generator("train_2d_shifted_input/x"),
                           dtype=torch.float32) * 2.0 + 50.0).double()
    bn_train_case(ff, "train_2d_shifted_input", (4, 2, 6, 6), x=shifted)
    constant = randn(generator("train_2d_constant_channel/x"), (2, 2, 4, 4))
    constant[:, 1] = f32(0.7)
    bn_train_case(ff, "train_2d_constant_channel", (2, 2, 4, 4), x=constant)
    # Evaluation.
    bn_eval_case(ff, "eval_1d_affine", (6, 4))
    bn_eval_case(ff, "eval_1d_ncl_no_affine", (4, 3, 6), weight=False, bias=False)
    bn_eval_case(ff, "eval_2d_affine", (3, 4, 5, 5))
    bn_eval_case(ff, "eval_2d_no_affine_eps_1e_3", (2, 3, 4, 4), eps=1e-3, weight=False,
                 bias=False)
    bn_eval_case(ff, "eval_2d_weight_only", (2, 2, 5, 4), bias=False)
    return ff


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


def cross_entropy_case(ff, case, n, k, label_smoothing, x=None, target=None):
    g = generator(case)
    x = randn(g, (n, k), scale=2.0) if x is None else x
    target = torch.randint(0, k, (n,), generator=g) if target is None else target
    xl = leaf(x)
    loss = F.cross_entropy(xl, target, label_smoothing=f32(label_smoothing))
    loss.backward()
    ff.case(case, {"op": "cross_entropy", "label_smoothing": label_smoothing},
            {"input": x, "target": target, "loss": loss.reshape(1), "grad_input": xl.grad})


def huge_logits():
    """Logits of magnitude 1e4 next to ordinary ones; targets hit the largest logit, a
    moderate one and a hugely negative one."""
    x = torch.tensor([[1e4, -1e4, 0.0, 5e3, -3.5],
                      [-1e4, -1e4, -1e4, -1e4, 1e4],
                      [2.0, 1e4, 1e4, -0.5, 3.0],
                      [-1e4, 7.0, -2.0, 1e4, 0.25]], dtype=torch.float32).double()
    return x, torch.tensor([0, 2, 1, 1])


def mse_case(ff, case, shape):
    g = generator(case)
    x, t = randn(g, shape), randn(g, shape)
    xl = leaf(x)
    loss = F.mse_loss(xl, t)
    loss.backward()
    ff.case(case, {"op": "mse_loss"},
            {"input": x, "target": t, "loss": loss.reshape(1), "grad_input": xl.grad})


def softmax_case(ff, case, op, x):
    fn = {"softmax": F.softmax, "log_softmax": F.log_softmax}[op]
    ff.case(case, {"op": op}, {"input": x, "output": fn(x, dim=1)})


def loss_cases():
    ff = FixtureFile("loss")
    cross_entropy_case(ff, "ce_ls0", 6, 5, 0.0)
    cross_entropy_case(ff, "ce_ls0_1", 6, 5, 0.1)
    cross_entropy_case(ff, "ce_ls0_3", 6, 5, 0.3)
    cross_entropy_case(ff, "ce_ls1", 4, 3, 1.0)
    cross_entropy_case(ff, "ce_batch1", 1, 10, 0.0)
    cross_entropy_case(ff, "ce_single_class", 3, 1, 0.1)
    cross_entropy_case(ff, "ce_batch128_k10_ls0_1", 128, 10, 0.1)
    x, t = huge_logits()
    for e, name in ((0.0, "0"), (0.1, "0_1"), (0.3, "0_3")):
        cross_entropy_case(ff, f"ce_huge_logits_ls{name}", 4, 5, e, x=x, target=t)
    mse_case(ff, "mse_2d", (4, 5))
    mse_case(ff, "mse_4d", (2, 3, 4, 4))
    mse_case(ff, "mse_one_element", (1,))
    x = randn(generator("softmax_inputs"), (5, 7), scale=3.0)
    softmax_case(ff, "softmax", "softmax", x)
    softmax_case(ff, "log_softmax", "log_softmax", x)
    x, _ = huge_logits()
    softmax_case(ff, "softmax_huge_logits", "softmax", x)
    softmax_case(ff, "log_softmax_huge_logits", "log_softmax", x)
    return ff


# ---------------------------------------------------------------------------------------


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for make in (conv_cases, pool_cases, activation_cases, linear_cases, batch_norm_cases,
                 loss_cases):
        ff = make()
        path = ff.write(OUT_DIR)
        check_written(path, ff)
        size = os.path.getsize(path)
        total += size
        print(f"{os.path.relpath(path, ROOT)}: {len(ff.meta)} cases, "
              f"{len(ff.tensors)} tensors, {size} bytes")
    print(f"total: {total} bytes")
    if total >= 1_000_000:
        sys.exit("fixtures are too large (keep the shapes small)")


if __name__ == "__main__":
    main()
