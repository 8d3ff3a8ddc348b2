#!/usr/bin/env python3
"""Small real ONNX files for the convnet-onnx reader's tests, and what `onnx` reads in them.

    ~/.venv-torch/bin/python tools/gen_onnx_fixtures.py

Needs torch, onnx and onnxscript (the dynamo exporter): pip install onnx onnxscript.
Writes into crates/convnet-onnx/tests/fixtures/:

  helper_conv.onnx        onnx.helper: Conv (group, pads, strides), Relu, MaxPool
                          (ceil_mode), GlobalAveragePool, Flatten, Gemm, Softmax; raw_data
                          weights; a symbolic batch dimension; opset 17
  helper_external.onnx    the same graph with every weight in helper_external.onnx.data
  helper_types.onnx       initializers of every data type read (float32 in float_data,
                          float16 in raw_data and in int32_data, bfloat16, float64 in
                          double_data, int64, int32, int8, uint8, bool), a Constant, and a
                          node with attributes of every kind; value_info with a symbolic, an
                          unknown and a negative dimension
  torch_legacy.onnx       a tiny CNN (conv, batch norm, ReLU, ceil-mode max pool, depthwise
                          conv, residual add, global pool, linear) from torch.onnx.export's
                          TorchScript exporter (dynamo=False)
  torch_legacy_external.onnx (+ .onnx.data)  the same, its weights moved to external data
  torch_dynamo.onnx (+ .onnx.data)  the same net from the dynamo exporter, with its default
                          external data
  torch_dynamo_inline.onnx  the dynamo exporter with external_data=False
  third_party/ch_ppocr_mobile_v2.0_cls_infer.onnx  PaddleOCR's text-direction classifier
                          (585 KB, Apache-2.0) from the PyPI package rapidocr-onnxruntime
                          1.4.4, fetched with pip download: a real graph from another
                          exporter (Paddle2ONNX, opset 11, weights in Constant nodes' typed
                          fields, -1 for "any" in shapes)
  manifest.json           for each file, what the `onnx` package reads: ir_version, opsets,
                          inputs and outputs with shapes, nodes (in file order) with their
                          inputs, outputs and simple attributes, and every initializer's
                          name, dims, type, element sum and first elements
"""

import json
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "convnet-onnx" / "tests" / "fixtures"


def rng_array(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def helper_conv_model():
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng_array(rng, (4, 3, 3, 3)), "conv.weight"),
        numpy_helper.from_array(rng_array(rng, (4,)), "conv.bias"),
        numpy_helper.from_array(rng_array(rng, (4, 2, 3, 3)), "grouped.weight"),
        numpy_helper.from_array(rng_array(rng, (5, 4)), "fc.weight"),
        numpy_helper.from_array(rng_array(rng, (5,)), "fc.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv_out"], name="conv",
                         pads=[1, 1, 1, 1], strides=[1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], name="pool", kernel_shape=[3, 3],
                         strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["pool_out", "grouped.weight", ""], ["grouped_out"],
                         name="grouped", group=2, pads=[0, 1, 1, 0], dilations=[1, 1]),
        helper.make_node("GlobalAveragePool", ["grouped_out"], ["gap_out"], name="gap"),
        helper.make_node("Flatten", ["gap_out"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1, alpha=1.0, beta=1.0),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "helper_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 5])],
        initializer=inits,
        value_info=[helper.make_tensor_value_info("conv_out", TensorProto.FLOAT, ["batch", 4, 8, 8])],
    )
    model = helper.make_model(graph, producer_name="gen_onnx_fixtures",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def helper_types_model():
    rng = np.random.default_rng(1)
    f16 = rng_array(rng, (2, 3)).astype(np.float16)
    inits = [
        # float32 in the typed field rather than raw_data.
        helper.make_tensor("f32_typed", TensorProto.FLOAT, [2, 2], [0.5, -1.0, 2.0, 3.25]),
        numpy_helper.from_array(f16, "f16_raw"),
        # float16 as bits in int32_data, as onnx.helper writes it without raw=True.
        helper.make_tensor("f16_typed", TensorProto.FLOAT16, [2, 3], f16.flatten().tolist()),
        helper.make_tensor("bf16_typed", TensorProto.BFLOAT16, [3], [1.0, -2.5, 0.15625]),
        helper.make_tensor("f64_typed", TensorProto.DOUBLE, [3], [1.0, 1e-300, -2.5]),
        numpy_helper.from_array(np.array([[1, -2, 3]], dtype=np.int64), "i64_raw"),
        helper.make_tensor("i64_typed", TensorProto.INT64, [2], [-(2 ** 40), 7]),
        helper.make_tensor("i32_typed", TensorProto.INT32, [2], [-5, 2 ** 30]),
        helper.make_tensor("i8_typed", TensorProto.INT8, [3], [-128, 0, 127]),
        numpy_helper.from_array(np.array([0, 200, 255], dtype=np.uint8), "u8_raw"),
        helper.make_tensor("bool_typed", TensorProto.BOOL, [4], [True, False, False, True]),
        numpy_helper.from_array(np.array(3.5, dtype=np.float32), "scalar"),
        numpy_helper.from_array(np.zeros((0, 4), dtype=np.float32), "empty"),
    ]
    value = helper.make_tensor("const_value", TensorProto.FLOAT, [2], [1.5, -0.5])
    nodes = [
        helper.make_node("Constant", [], ["const"], name="const", value=value),
        helper.make_node(
            "Everything", ["x", "const", "f32_typed"], ["y", ""], name="everything",
            domain="test.domain",
            an_int=-3, some_ints=[1, 2, -7], a_float=0.25, some_floats=[1.5, -2.0],
            a_string="SAME_UPPER", some_strings=["nearest", "linear"],
            a_tensor=helper.make_tensor("attr_t", TensorProto.INT64, [2], [4, 5]),
        ),
        helper.make_node("Identity", ["y"], ["z"], name=""),
    ]
    graph = helper.make_graph(
        nodes, "helper_types",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", None, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 4])
    y.type.tensor_type.shape.dim[1].dim_value = -1  # as PaddlePaddle writes "any"
    graph.value_info.append(y)
    return helper.make_model(graph, producer_name="gen_onnx_fixtures",
                             opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("test.domain", 1)])


class TinyNet(torch.nn.Module):
    """Conv, BN, ReLU, ceil-mode max pool, depthwise conv with a residual add, linear head."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pool = torch.nn.MaxPool2d(2, ceil_mode=True)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        x = x + self.dw(x)
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def tiny_net():
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():  # non-trivial BN statistics
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def export_torch():
    net, x = tiny_net(), torch.randn(1, 3, 9, 9)
    legacy = OUT / "torch_legacy.onnx"
    torch.onnx.export(net, (x,), str(legacy), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    model = onnx.load(str(legacy))
    save_external(model, OUT / "torch_legacy_external.onnx")
    batch = torch.export.Dim("batch")
    for name, external in [("torch_dynamo.onnx", True), ("torch_dynamo_inline.onnx", False)]:
        remove(OUT / name, OUT / (name + ".data"))
        program = torch.onnx.export(net, (x,), dynamo=True, external_data=external,
                                    input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},))
        program.save(str(OUT / name), external_data=external)


def save_external(model, path):
    data = path.name + ".data"
    remove(path, path.with_name(data))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data, size_threshold=0)


def third_party():
    """The rapidocr classifier, from its wheel (pip download --no-deps, no install)."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    target = OUT / "third_party" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    target.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "rapidocr-onnxruntime==1.4.4", "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            target.write_bytes(z.read("rapidocr_onnxruntime/models/" + target.name))


def remove(*paths):
    for p in paths:
        if p.exists():
            p.unlink()


def shape_of(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value if d.dim_value >= 0 else None)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def attribute_json(a):
    value = helper.get_attribute_value(a)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    if isinstance(value, TensorProto):
        array = numpy_helper.to_array(value)
        return {"dims": list(array.shape), "values": array.astype(np.float64).flatten().tolist()}
    return value


def tensor_json(t, folder):
    array = numpy_helper.to_array(t, base_dir=str(folder))
    flat = array.astype(np.float64).flatten()
    return {
        "name": t.name,
        "dims": list(array.shape),
        "data_type": t.data_type,
        "sum": float(flat.sum()),
        "first": flat[:4].tolist(),
    }


def manifest_entry(path):
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    init_names = {t.name for t in g.initializer}
    return {
        "ir_version": model.ir_version,
        "producer": model.producer_name,
        "opsets": {o.domain: o.version for o in model.opset_import},
        "inputs": [{"name": v.name, "elem_type": v.type.tensor_type.elem_type, "shape": shape_of(v)}
                   for v in g.input if v.name not in init_names],
        "outputs": [{"name": v.name, "elem_type": v.type.tensor_type.elem_type, "shape": shape_of(v)}
                    for v in g.output],
        "nodes": [{"name": n.name, "op_type": n.op_type, "domain": n.domain,
                   "inputs": list(n.input), "outputs": list(n.output),
                   "attributes": {a.name: attribute_json(a) for a in n.attribute}}
                  for n in g.node],
        "initializers": [tensor_json(t, path.parent) for t in g.initializer],
        "external_data": any(t.data_location == TensorProto.EXTERNAL for t in g.initializer),
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    conv = helper_conv_model()
    onnx.save(conv, str(OUT / "helper_conv.onnx"))
    save_external(conv, OUT / "helper_external.onnx")
    onnx.save(helper_types_model(), str(OUT / "helper_types.onnx"))
    export_torch()
    third_party()
    names = sorted(p.name for p in OUT.glob("*.onnx"))
    manifest = {name: manifest_entry(OUT / name) for name in names}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:>8}  {p.name}")
    print(f"torch {torch.__version__}, onnx {onnx.__version__}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
