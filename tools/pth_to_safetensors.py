#!/usr/bin/env python3
"""PyTorch checkpoints (.pth/.pt state_dicts) to safetensors, without PyTorch.

    python3 tools/pth_to_safetensors.py IN.pth OUT.safetensors [--check]

Needs only numpy (pip install numpy), so CI can turn pretrained weights shipped in registry
packages (torchvision's mobilenet_v2-b0353104.pth, facenet-pytorch's pnet.pt, ...) into
weights convnet reads, without installing torch (a 5 GB install).

Both of torch.save's formats are read:
  - the zip format (torch >= 1.6): `<archive>/data.pkl` plus one file per storage,
    `<archive>/data/<key>`;
  - the legacy format (older files, like the two above): a magic-number pickle, a protocol
    version, system info, the state_dict pickle, the storage-key list, then each storage as
    an int64 element count followed by its raw little-endian bytes.

The pickle is read with an Unpickler that resolves only the names a state_dict uses
(OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter, the typed storage
classes) and refuses everything else, so no code from the file is run.

Tensors keep their state_dict names, shapes and dtypes (strided views are made
contiguous). --check also loads the file with torch (when installed) and compares every
tensor bit for bit.
"""

import argparse
import collections
import io
import json
import pickle
import struct
import sys
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class -> (numpy dtype, safetensors dtype name)
STORAGES = {
    "FloatStorage": (np.float32, "F32"),
    "DoubleStorage": (np.float64, "F64"),
    "HalfStorage": (np.float16, "F16"),
    "BFloat16Storage": (np.uint16, "BF16"),  # bits: numpy has no bfloat16
    "LongStorage": (np.int64, "I64"),
    "IntStorage": (np.int32, "I32"),
    "ShortStorage": (np.int16, "I16"),
    "CharStorage": (np.int8, "I8"),
    "ByteStorage": (np.uint8, "U8"),
    "BoolStorage": (np.bool_, "BOOL"),
}


class StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype, self.st_dtype = STORAGES[name]


class Storage:
    """A storage named in the pickle; its bytes are attached once read."""

    def __init__(self, storage_type, key, numel):
        self.type = storage_type
        self.key = key
        self.numel = numel
        self.array = None


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        base = self.storage.array
        item = base.itemsize
        if self.size and any(s == 0 for s in self.size):
            return np.zeros(self.size, dtype=base.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= len(base) or any(s < 0 for s in self.stride):
            raise ValueError(f"tensor view {self.size}/{self.stride}+{self.offset} "
                             f"outside its storage of {len(base)} elements")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=[s * item for s in self.stride])
        return np.array(view, order="C")  # (ascontiguousarray would make a scalar 1-D)


def rebuild_tensor(storage, offset, size, stride, *_rest):
    return TensorRef(storage, offset, size, stride)


def rebuild_parameter(data, *_rest):
    return data


class StateDictUnpickler(pickle.Unpickler):
    """Resolves only what a state_dict pickle names; refuses everything else."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    }

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGES:
            return StorageType(name)
        raise pickle.UnpicklingError(f"refused: {module}.{name} is not part of a state_dict")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = Storage(storage_type, key, numel)
        return self.storages[key]


def read_zip(path):
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages = {}
        obj = StateDictUnpickler(io.BytesIO(z.read(pkl)), storages).load()
        for key, s in storages.items():
            raw = z.read(f"{prefix}data/{key}")
            s.array = np.frombuffer(raw, dtype=s.type.dtype)
    return obj


def read_legacy(path):
    with open(path, "rb") as f:
        data = f.read()
    f = io.BytesIO(data)
    plain = lambda: pickle.Unpickler(f).load()  # noqa: E731 (numbers and dicts only)
    if plain() != LEGACY_MAGIC:
        raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
    if plain() != 1001:
        raise ValueError(f"{path}: unknown legacy protocol version")
    plain()  # sys_info: byte order and type sizes
    storages = {}
    obj = StateDictUnpickler(f, storages).load()
    keys = plain()
    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        s = storages[key]
        size = numel * np.dtype(s.type.dtype).itemsize
        raw = f.read(size)
        if numel < 0 or len(raw) != size:
            raise ValueError(f"{path}: storage {key} is truncated")
        s.array = np.frombuffer(raw, dtype=s.type.dtype)
    return obj


def read_state_dict(path):
    obj = read_zip(path) if zipfile.is_zipfile(path) else read_legacy(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    tensors = collections.OrderedDict()
    for name, value in obj.items():
        if isinstance(value, TensorRef):
            tensors[name] = (value.to_numpy(), value.storage.type.st_dtype)
    return tensors


def write_safetensors(tensors, path):
    header, offset, blobs = {}, 0, []
    for name, (array, dtype) in tensors.items():
        blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def check_against_torch(path, tensors):
    import torch

    reference = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in reference and isinstance(reference["state_dict"], dict):
        reference = reference["state_dict"]
    assert list(reference) == list(tensors), "names or order differ"
    for name, t in reference.items():
        ours = tensors[name][0]
        theirs = t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
        assert ours.tobytes() == theirs.tobytes(), name
    print(f"check: {len(reference)} tensors equal torch.load's bit for bit")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--check", action="store_true", help="compare with torch.load")
    args = p.parse_args()
    tensors = read_state_dict(args.input)
    write_safetensors(tensors, args.output)
    params = sum(a.size for a, _ in tensors.values())
    print(f"{args.output}: {len(tensors)} tensors, {params} elements")
    if args.check:
        check_against_torch(args.input, tensors)


if __name__ == "__main__":
    sys.exit(main())
