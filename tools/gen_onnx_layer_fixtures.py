#!/usr/bin/env python3
"""Golden fixtures for the layer kinds ONNX graphs map onto: what PyTorch computes.

    ~/.venv-torch/bin/python tools/gen_onnx_layer_fixtures.py

Writes crates/convnet/tests/fixtures/onnx_layers.safetensors (read by
crates/convnet/tests/onnx_layers.rs). One *case* per layer setting; its tensors are
"<case>.in0", "<case>.in1", ... (the layer's inputs, batch axis first), "<case>.grad_output",
"<case>.output", "<case>.grad_in0", ... (what autograd gives each input), and for layers
with learnable tensors "<case>.param.<name>" (the value the layer is given) and
"<case>.grad.<name>" (its gradient). The header's `__metadata__` maps each case name to the
layer's table in a convnet model file (`type = "clip"\\nmin = 0.0\\n...`), so the settings are
written once, here. All tensors are float32.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "crates/convnet/tests/fixtures/onnx_layers.safetensors"

tensors = {}
metadata = {}
gen = torch.Generator().manual_seed(20261201)


def rand(*shape, lo=-1.0, hi=1.0):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).float()


def case(name, table, fn, inputs, params=None):
    """Run fn(*inputs, **params) with autograd and store everything under `name`."""
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    params = {k: v.clone().requires_grad_(True) for k, v in (params or {}).items()}
    y = fn(*inputs, **params)
    g = rand(*y.shape)
    y.backward(g)
    metadata[name] = table
    for i, x in enumerate(inputs):
        tensors[f"{name}.in{i}"] = x.detach()
        tensors[f"{name}.grad_in{i}"] = x.grad
    for k, v in params.items():
        tensors[f"{name}.param.{k}"] = v.detach()
        tensors[f"{name}.grad.{k}"] = v.grad
    tensors[f"{name}.grad_output"] = g
    tensors[f"{name}.output"] = y.detach()


# clip: values on both bounds, where torch.clamp passes no gradient.
x = rand(2, 3, 4, 5, lo=-2.0, hi=8.0)
x.view(-1)[:4] = torch.tensor([0.0, 6.0, -0.0, 5.999999])
case("clip_relu6", 'type = "clip"\nmin = 0.0\nmax = 6.0\n', lambda x: torch.clamp(x, 0.0, 6.0), [x])
case("clip_below", 'type = "clip"\nmax = 0.25\n', lambda x: torch.clamp(x, max=0.25), [rand(3, 7)])

# hardsigmoid: PyTorch's (kinks at -3 and 3 included) and ONNX's default alpha 0.2.
x = rand(2, 3, 4, 4, lo=-4.0, hi=4.0)
x.view(-1)[:4] = torch.tensor([-3.0, 3.0, 0.0, 2.999])
case("hardsigmoid", 'type = "hardsigmoid"\n', F.hardsigmoid, [x])
case(
    "hardsigmoid_onnx",
    'type = "hardsigmoid"\nalpha = 0.2\nbeta = 0.5\n',
    lambda x: torch.clamp(0.2 * x + 0.5, 0.0, 1.0),
    [rand(2, 5, 3, lo=-4.0, hi=4.0)],
)

# concat: along channels of images and of vectors, and along the width.
case(
    "concat_channels",
    'type = "concat"\n',
    lambda a, b, c: torch.cat([a, b, c], dim=1),
    [rand(2, 3, 4, 5), rand(2, 2, 4, 5), rand(2, 1, 4, 5)],
)
case("concat_features", 'type = "concat"\ndim = 1\n', lambda a, b: torch.cat([a, b], 1), [rand(3, 4), rand(3, 2)])
case("concat_width", 'type = "concat"\ndim = 3\n', lambda a, b: torch.cat([a, b], 3), [rand(2, 3, 4, 2), rand(2, 3, 4, 5)])

# Binary ops with broadcasting. A layer's inputs each have a batch axis; per-sample shapes
# of lower rank are aligned to the right (ONNX and NumPy), which for a [N, F] operand of a
# [N, C, H, W] one is a view [N, 1, 1, F].
OPS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
for op, fn in OPS.items():
    pos = dict(lo=0.5, hi=2.0) if op == "div" else {}
    case(f"{op}_same", f'type = "{op}"\n', fn, [rand(2, 3, 4, 5), rand(2, 3, 4, 5, **pos)])
    case(f"{op}_channel", f'type = "{op}"\n', fn, [rand(2, 3, 4, 5), rand(1, 3, 1, 1, **pos)])
    case(f"{op}_both", f'type = "{op}"\n', fn, [rand(2, 1, 5), rand(1, 4, 1, **pos)])
    case(
        f"{op}_rank",
        f'type = "{op}"\n',
        lambda a, b, fn=fn: fn(a, b.view(b.shape[0], 1, 1, b.shape[1])),
        [rand(2, 3, 4, 5), rand(2, 5, **pos)],
    )
    case(
        f"{op}_rank_left",
        f'type = "{op}"\n',
        lambda a, b, fn=fn: fn(a.view(a.shape[0], 1, a.shape[1]), b),
        [rand(2, 4, **pos), rand(2, 3, 4, **pos)],
    )

# softmax along channels (images, vectors) and along the last axis.
case("softmax_channels", 'type = "softmax"\n', lambda x: F.softmax(x, dim=1), [rand(2, 5, 3, 4, lo=-4, hi=4)])
case("softmax_features", 'type = "softmax"\ndim = 1\n', lambda x: F.softmax(x, dim=1), [rand(3, 7, lo=-4, hi=4)])
case("softmax_last", 'type = "softmax"\ndim = 3\n', lambda x: F.softmax(x, dim=3), [rand(2, 3, 4, 6, lo=-4, hi=4)])

# conv_transpose2d: strided, padded, output padding, groups, bias; and dilated, uneven.
case(
    "conv_transpose_strided",
    'type = "conv_transpose2d"\nin_channels = 4\nout_channels = 6\nkernel = 3\nstride = 2\n'
    "padding = 1\noutput_padding = 1\ngroups = 2\n",
    lambda x, weight, bias: F.conv_transpose2d(x, weight, bias, stride=2, padding=1, output_padding=1, groups=2),
    [rand(2, 4, 5, 5)],
    {"weight": rand(4, 3, 3, 3), "bias": rand(6)},
)
case(
    "conv_transpose_dilated",
    'type = "conv_transpose2d"\nout_channels = 2\nkernel = [2, 3]\nstride = [1, 2]\n'
    "padding = [0, 1]\noutput_padding = [0, 1]\ndilation = [2, 1]\nbias = false\n",
    lambda x, weight: F.conv_transpose2d(x, weight, None, stride=(1, 2), padding=(0, 1), output_padding=(0, 1), dilation=(2, 1)),
    [rand(2, 3, 4, 5)],
    {"weight": rand(3, 2, 2, 3)},
)

# pad: [top, left, bottom, right] (ONNX's order of begins then ends); F.pad takes
# (left, right, top, bottom).
for mode in ["constant", "reflect", "replicate", "circular"]:
    value = "value = 0.5\n" if mode == "constant" else ""
    case(
        f"pad_{mode}",
        f'type = "pad"\npads = [1, 2, 3, 0]\nmode = "{mode}"\n{value}',
        lambda x, mode=mode: F.pad(x, (2, 0, 1, 3), mode=mode, value=0.5) if mode == "constant" else F.pad(x, (2, 0, 1, 3), mode=mode),
        [rand(2, 3, 4, 5)],
    )

# resize: F.interpolate, nearest (legacy) and bilinear, by scale and by size.
x = rand(2, 3, 4, 5)
case("resize_nearest_scale", 'type = "resize"\nscale = [2.0, 2.0]\n', lambda x: F.interpolate(x, scale_factor=2.0, mode="nearest"), [x])
case("resize_nearest_size", 'type = "resize"\nsize = [7, 9]\n', lambda x: F.interpolate(x, size=(7, 9), mode="nearest"), [x])
case("resize_nearest_down", 'type = "resize"\nsize = [3, 2]\n', lambda x: F.interpolate(x, size=(3, 2), mode="nearest"), [x])
case(
    "resize_bilinear_size",
    'type = "resize"\nsize = [7, 9]\nmode = "bilinear"\n',
    lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=False),
    [x],
)
case(
    "resize_bilinear_corners",
    'type = "resize"\nsize = [7, 9]\nmode = "bilinear"\nalign_corners = true\n',
    lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True),
    [x],
)
case(
    "resize_bilinear_scale",
    'type = "resize"\nscale = [2.0, 1.5]\nmode = "bilinear"\n',
    lambda x: F.interpolate(x, scale_factor=(2.0, 1.5), mode="bilinear", align_corners=False),
    [x],
)
case(
    "resize_bilinear_down",
    'type = "resize"\nsize = [3, 2]\nmode = "bilinear"\n',
    lambda x: F.interpolate(x, size=(3, 2), mode="bilinear", align_corners=False),
    [x],
)

OUT.parent.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT), metadata=metadata)
print(f"wrote {OUT} ({len(metadata)} cases, {len(tensors)} tensors)")
