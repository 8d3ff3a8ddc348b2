#!/usr/bin/env python3
"""Training-step fixtures: what two optimizer steps of a small model do in PyTorch.

    ~/.venv-torch/bin/python tools/gen_train_fixtures.py

Writes crates/convnet/tests/fixtures/train_step.safetensors and train_step_model.toml. The
model has conv, batch norm, PReLU (per channel and shared), a residual add, max pooling,
dropout (p = 0: off) and a linear layer; the loss is cross-entropy with label smoothing 0.1.
From the same initial weights, it records the whole state_dict (parameters and batch-norm
statistics) after one and after two steps on one batch, for SGD with momentum and weight decay
and for AdamW. Tensors: `initial.<name>`, `input`, `labels`, `<optimizer>.<step>.<name>`;
the metadata holds the optimizer settings. Computed in float32, as training runs.

Convolutions that feed batch norm have no bias: such a bias has a gradient that is zero in
exact arithmetic, i.e. rounding noise, whose sign would decide Adam's first step.
"""

import json
import os

import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "convnet", "tests", "fixtures")

MODEL_TOML = """\
# The small model of tools/gen_train_fixtures.py (the PyTorch class `Small`).
[model]
input = [3, 8, 8]

[[layer]]
name = "conv1"
type = "conv2d"
out_channels = 4
kernel = 3
padding = 1
bias = false

[[layer]]
name = "bn1"
type = "batchnorm2d"

[[layer]]
name = "act1"
type = "prelu"
num_parameters = "channels"

[[layer]]
name = "conv2"
type = "conv2d"
out_channels = 4
kernel = 3
padding = 1
bias = false

[[layer]]
name = "bn2"
type = "batchnorm2d"

[[layer]]
name = "act2"
type = "prelu"

[[layer]]
name = "add"
type = "add"
inputs = ["act2", "act1"]

[[layer]]
name = "pool"
type = "max_pool2d"
kernel = 2

[[layer]]
name = "flat"
type = "flatten"

[[layer]]
name = "drop"
type = "dropout"
p = 0.0

[[layer]]
name = "fc"
type = "linear"
out_features = 5
"""


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = nn.PReLU(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.act2 = nn.PReLU()
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.0)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        a = self.act1(self.bn1(self.conv1(x)))
        b = self.act2(self.bn2(self.conv2(a)))
        p = self.pool(b + a)
        return self.fc(self.drop(torch.flatten(p, 1)))


OPTIMIZERS = {
    "sgd": (lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3, foreach=False),
            {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 1e-3, "nesterov": False}),
    "adamw": (lambda params: torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, foreach=False),
              {"kind": "adam_w", "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05}),
}


def main():
    torch.manual_seed(0)
    model = Small()
    with torch.no_grad():
        # Slopes of PReLU away from the default, so their gradients matter.
        model.act1.weight.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 1])
    tensors = {f"initial.{k}": v for k, v in initial.items()}
    tensors["input"] = x
    tensors["labels"] = labels
    for name, (make, settings) in OPTIMIZERS.items():
        model.load_state_dict(initial)
        model.train()
        opt = make(model.parameters())
        for step in (1, 2):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), labels, label_smoothing=0.1)
            loss.backward()
            smallest = min(p.grad.abs().min().item() for p in model.parameters())
            assert smallest > 1e-6, f"{name} step {step}: a gradient is {smallest}, too close to 0"
            opt.step()
            for k, v in model.state_dict().items():
                tensors[f"{name}.{step}.{k}"] = v.clone()
    meta = {"optimizers": json.dumps({k: v[1] for k, v in OPTIMIZERS.items()}), "label_smoothing": "0.1"}
    from safetensors.torch import save_file
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "train_step.safetensors"), metadata=meta)
    with open(os.path.join(OUT, "train_step_model.toml"), "w") as f:
        f.write(MODEL_TOML)
    print(f"wrote train_step.safetensors ({len(tensors)} tensors) and train_step_model.toml")


if __name__ == "__main__":
    main()
