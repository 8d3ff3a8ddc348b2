#!/usr/bin/env python3
"""Make the small Fashion-MNIST sample that convnet embeds (data/fashion-mnist-sample/).

Run (Python 3 standard library only):

    python3 tools/make_sample.py [SOURCE_DIR] [OUT_DIR]

SOURCE_DIR defaults to /usr/share/datasets/fashion-mnist (the full set, IDX gz, e.g. from
`apt-get install -y dataset-fashion-mnist`); OUT_DIR defaults to data/fashion-mnist-sample
beside this script's parent folder.

Which images: from the training set, the first 200 images of each class in file order
(2000 in all); from the test set, the first 50 of each class (500 in all). The chosen images
keep their relative file order (classes stay interleaved as in the original files).

The output is four gzip IDX files with the original names (train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), gzip
level 9 with mtime 0 and no file name in the header, so running this again gives the same
bytes.
"""

import gzip
import os
import struct
import sys

TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 50
CLASSES = 10


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    found, = struct.unpack(">I", data[:4])
    if found != magic:
        sys.exit(f"{path}: magic 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def write_gz(path, payload):
    with open(path, "wb") as f:
        f.write(gzip.compress(payload, compresslevel=9, mtime=0))


def sample(src, out, prefix, per_class):
    dims, pixels = read_idx(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz"), 0x803)
    (nl,), labels = read_idx(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz"), 0x801)
    n, h, w = dims
    if nl != n or len(labels) != n or len(pixels) != n * h * w:
        sys.exit(f"{src}: {prefix} images/labels disagree ({n} images, {nl} labels)")
    taken = [0] * CLASSES
    chosen = []
    for i, label in enumerate(labels):
        if taken[label] < per_class:
            taken[label] += 1
            chosen.append(i)
    if taken != [per_class] * CLASSES:
        sys.exit(f"{src}: {prefix} has too few images of some class: {taken}")
    size = h * w
    images = b"".join(pixels[i * size:(i + 1) * size] for i in chosen)
    write_gz(
        os.path.join(out, f"{prefix}-images-idx3-ubyte.gz"),
        struct.pack(">IIII", 0x803, len(chosen), h, w) + images,
    )
    write_gz(
        os.path.join(out, f"{prefix}-labels-idx1-ubyte.gz"),
        struct.pack(">II", 0x801, len(chosen)) + bytes(labels[i] for i in chosen),
    )
    print(f"{prefix}: {len(chosen)} images ({per_class} per class), {h}x{w}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    out = (
        sys.argv[2]
        if len(sys.argv) > 2
        else os.path.join(here, "..", "data", "fashion-mnist-sample")
    )
    os.makedirs(out, exist_ok=True)
    sample(src, out, "train", TRAIN_PER_CLASS)
    sample(src, out, "t10k", TEST_PER_CLASS)


if __name__ == "__main__":
    main()
