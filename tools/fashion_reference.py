#!/usr/bin/env python3
"""The reference Fashion-MNIST CNN in PyTorch: the same model as models/fashion_cnn.toml, with
the same state_dict names, so weights move between PyTorch and convnet both ways.

Needs torch, numpy and safetensors (e.g. ~/.venv-torch/bin/python). Commands:

  fixture   Train the PyTorch model briefly on the embedded sample (so weights and batch-norm
            statistics are not trivial), then write
              crates/convnet/tests/fixtures/fashion_reference_weights.safetensors  (state_dict)
              crates/convnet/tests/fixtures/fashion_reference_io.safetensors       (input, logits)
            The Rust test loads the weights into convnet and checks its logits (evaluation mode).
  load      Load a convnet checkpoint's weights.safetensors into the PyTorch model and report
            its test accuracy; with --logits-from FILE.npy (from `convnet run`), also compare
            logits on the same inputs:
              python tools/fashion_reference.py load --weights runs/train/best/weights.safetensors
  train     The reference recipe, for speed and accuracy comparisons in the same session:
            inputs normalized by the training set's mean and std, random horizontal flips,
            batch 128, AdamW (weight decay 5e-4), one-cycle schedule peaking at 3e-3.
              python tools/fashion_reference.py train --epochs 10 --threads 2
  bench     Time whole training steps of the recipe (forward, cross-entropy, backward, AdamW
            step, schedule step) on one batch of random images, as `convnet bench --train`
            does, and print one JSON line: images/s and the process's peak RSS (VmHWM):
              python tools/fashion_reference.py bench --batch 128 --steps 20 --threads 2

Data: the full Fashion-MNIST from /usr/share/datasets/fashion-mnist when present, else the
embedded sample in data/fashion-mnist-sample (IDX gz files, read with numpy).
"""

import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = "/usr/share/datasets/fashion-mnist"
SAMPLE = os.path.join(ROOT, "data", "fashion-mnist-sample")
FIXTURES = os.path.join(ROOT, "crates", "convnet", "tests", "fixtures")


class FashionCNN(nn.Module):
    """models/fashion_cnn.toml, module for module."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, 1, rows, cols)
    if magic == 0x801:
        return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)
    raise ValueError(f"{path}: not an IDX file (magic {magic:#x})")


def load_split(folder, prefix):
    def find(name):
        for suffix in ("", ".gz"):
            p = os.path.join(folder, name + suffix)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(os.path.join(folder, name))
    return (read_idx(find(f"{prefix}-images-idx3-ubyte")), read_idx(find(f"{prefix}-labels-idx1-ubyte")))


def load_data(folder=None):
    folder = folder or (FULL if os.path.isdir(FULL) else SAMPLE)
    return folder, load_split(folder, "train"), load_split(folder, "t10k")


def normalize(images, mean, std):
    """(pixel / 255 - mean) / std, as convnet (and torchvision's ToTensor + Normalize) does."""
    x = torch.from_numpy(images.astype(np.float32)) / 255.0
    return (x - mean) / std


def evaluate(model, x, y, batch=512):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def train_epochs(model, x, y, epochs, batch, lr, wd, seed, on_epoch=None):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps = (len(x) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps)
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=g)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch:
            on_epoch(epoch, time.perf_counter() - start, loss.item())


def save_safetensors(path, tensors):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def cmd_fixture(args):
    torch.manual_seed(0)
    _, (xtr, ytr), (xte, yte) = load_data(SAMPLE)
    mean, std = float(xtr.mean() / 255.0), float(xtr.std() / 255.0)
    x, y = normalize(xtr, mean, std), torch.from_numpy(ytr)
    model = FashionCNN()
    train_epochs(model, x, y, epochs=1, batch=64, lr=3e-3, wd=5e-4, seed=0)
    model.eval()
    inputs = normalize(xte[:16], mean, std)
    with torch.no_grad():
        # The expected logits in float64 from the float32 weights and inputs.
        import copy
        logits = copy.deepcopy(model).double()(inputs.double()).float()
    os.makedirs(FIXTURES, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items()}
    save_safetensors(os.path.join(FIXTURES, "fashion_reference_weights.safetensors"), state)
    save_safetensors(os.path.join(FIXTURES, "fashion_reference_io.safetensors"),
                     {"input": inputs, "logits": logits})
    print(f"wrote fixtures: {len(state)} state_dict entries, input {tuple(inputs.shape)}, "
          f"logits {tuple(logits.shape)}, sample test accuracy of these weights "
          f"{evaluate(model, normalize(xte, mean, std), torch.from_numpy(yte)):.3f}")


def cmd_load(args):
    from safetensors.torch import load_file
    model = FashionCNN()
    # The whole state_dict must match: strict=True is the default.
    model.load_state_dict(load_file(args.weights))
    folder, (xtr, _), (xte, yte) = load_data(args.data)
    mean, std = float(xtr.mean() / 255.0), float(xtr.std() / 255.0)
    acc = evaluate(model, normalize(xte, mean, std), torch.from_numpy(yte))
    print(f"PyTorch with {args.weights}: test accuracy {100 * acc:.2f}% on {folder}")
    if args.input and args.logits_from:
        x = torch.from_numpy(np.load(args.input))
        theirs = torch.from_numpy(np.load(args.logits_from))
        model.eval()
        with torch.no_grad():
            ours = model(x)
        diff = (ours - theirs).abs().max().item()
        print(f"max |logits difference| on {args.input}: {diff:.3g}")
        if diff > 1e-4:
            sys.exit(f"logits differ by {diff}")


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder, (xtr, ytr), (xte, yte) = load_data(args.data)
    mean, std = float(xtr.mean() / 255.0), float(xtr.std() / 255.0)
    x, y = normalize(xtr, mean, std), torch.from_numpy(ytr)
    xt, yt = normalize(xte, mean, std), torch.from_numpy(yte)
    model = FashionCNN()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {folder}: {len(x)} train / {len(xt)} test")

    def report(epoch, seconds, loss):
        acc = evaluate(model, xt, yt)
        print(f"epoch {epoch + 1:>2}/{args.epochs}  last batch loss {loss:.4f}  test acc {100 * acc:6.2f}%  "
              f"{seconds:6.1f} s  {len(x) / seconds:6.0f} img/s", flush=True)

    train_epochs(model, x, y, args.epochs, 128, 3e-3, 5e-4, args.seed, report)
    if args.save:
        save_safetensors(args.save, model.state_dict())
        print(f"saved {args.save}")


def peak_rss_mb():
    """The process's peak resident set size (VmHWM) in MB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def cmd_bench(args):
    import json
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = FashionCNN()
    model.train()
    xb = torch.randn(args.batch, 1, 28, 28)
    yb = torch.randint(0, 10, (args.batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    warmup = 2
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps + warmup)

    def step():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "engine": f"torch {torch.__version__}",
        "threads": args.threads,
        "batch": args.batch,
        "steps": args.steps,
        "seconds": seconds,
        "images_per_second": args.batch * args.steps / seconds,
        "peak_rss_mb": peak_rss_mb(),
    }), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fixture")
    p = sub.add_parser("load")
    p.add_argument("--weights", required=True)
    p.add_argument("--data")
    p.add_argument("--input", help=".npy input to run (normalized [N, 1, 28, 28] float32)")
    p.add_argument("--logits-from", help=".npy logits from `convnet run` on --input")
    p = sub.add_parser("train")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data")
    p.add_argument("--save", help="write the trained state_dict here (.safetensors)")
    p = sub.add_parser("bench")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    {"fixture": cmd_fixture, "load": cmd_load, "train": cmd_train, "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    main()
