#!/usr/bin/env python3
"""Geometry fixtures: output shapes and parameter counts from PyTorch, for `convnet summary` /
`convnet shape` to be checked against; and models/resnet18.toml.

    ~/.venv-torch/bin/python tools/gen_geometry_fixtures.py

ResNet-18 is written here in plain PyTorch with torchvision's structure and module names, so
the model file it writes names its layers as torchvision's state_dict does (conv1, bn1,
layer1.0.conv1, layer2.0.downsample.0, fc, ...). Writes:

  models/resnet18.toml                              the model file
  crates/convnet/tests/fixtures/geometry.json       per model: input, total parameters, and for
                                                    each named module its output shape (one
                                                    sample, no batch axis) and parameter count
"""

import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_reference import FashionCNN  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, stride) in enumerate(widths, 1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_toml():
    lines = [
        "# ResNet-18 (He et al. 2016) with torchvision's module names, so a torchvision",
        "# state_dict loads as it is. Written by tools/gen_geometry_fixtures.py.",
        "",
        "[model]",
        'name = "resnet18"',
        "input = [3, 224, 224]",
    ]

    def layer(name, kind, inputs=None, **fields):
        lines.extend(["", "[[layer]]", f'name = "{name}"', f'type = "{kind}"'])
        if inputs:
            lines.append("inputs = [" + ", ".join(f'"{i}"' for i in inputs) + "]")
        for k, v in fields.items():
            lines.append(f"{k} = {json.dumps(v)}")

    layer("conv1", "conv2d", out_channels=64, kernel=7, stride=2, padding=3, bias=False)
    layer("bn1", "batchnorm2d")
    layer("relu", "relu")
    layer("maxpool", "max_pool2d", kernel=3, stride=2, padding=1)
    prev = "maxpool"
    widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
    for i, (cin, cout, stride) in enumerate(widths, 1):
        for b in range(2):
            s = stride if b == 0 else 1
            p = f"layer{i}.{b}"
            layer(f"{p}.conv1", "conv2d", [prev], out_channels=cout, kernel=3, stride=s, padding=1, bias=False)
            layer(f"{p}.bn1", "batchnorm2d")
            layer(f"{p}.relu1", "relu")
            layer(f"{p}.conv2", "conv2d", out_channels=cout, kernel=3, padding=1, bias=False)
            layer(f"{p}.bn2", "batchnorm2d")
            shortcut = prev
            if b == 0 and (s != 1 or cin != cout):
                layer(f"{p}.downsample.0", "conv2d", [prev], out_channels=cout, kernel=1, stride=s, bias=False)
                layer(f"{p}.downsample.1", "batchnorm2d")
                shortcut = f"{p}.downsample.1"
            layer(f"{p}.add", "add", [f"{p}.bn2", shortcut])
            layer(f"{p}.relu2", "relu")
            prev = f"{p}.relu2"
    layer("avgpool", "global_avg_pool2d")
    layer("flatten", "flatten")
    layer("fc", "linear", out_features=1000)
    return "\n".join(lines) + "\n"


def record(model, input_shape):
    """Output shape (one sample) and parameter count of every named leaf module."""
    shapes = {}

    def hook(name):
        def f(_module, _inputs, output):
            shapes.setdefault(name, list(output.shape[1:]))
        return f

    for name, m in model.named_modules():
        if name and not list(m.children()):
            m.register_forward_hook(hook(name))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    layers = {}
    for name, m in model.named_modules():
        if name in shapes:
            layers[name] = {
                "output_shape": shapes[name],
                "params": sum(p.numel() for p in m.parameters(recurse=False)),
            }
    return {
        "input": list(input_shape),
        "total_params": sum(p.numel() for p in model.parameters()),
        "layers": layers,
    }


def main():
    toml = resnet18_toml()
    with open(os.path.join(ROOT, "models", "resnet18.toml"), "w") as f:
        f.write(toml)
    fixture = {
        "resnet18": record(ResNet18(), (3, 224, 224)),
        "fashion_cnn": record(FashionCNN(), (1, 28, 28)),
    }
    out = os.path.join(ROOT, "crates", "convnet", "tests", "fixtures", "geometry.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote models/resnet18.toml and {os.path.relpath(out, ROOT)}: "
          f"resnet18 {fixture['resnet18']['total_params']} parameters, "
          f"fashion_cnn {fixture['fashion_cnn']['total_params']}")


if __name__ == "__main__":
    main()
