#!/usr/bin/env bash
# Regenerates crates/convnet-onnx/src/proto/{onnx.rs,layout.rs} from
# crates/convnet-onnx/proto/onnx.proto.
#
# The compiler is protox (a protobuf compiler written in Rust, from crates.io), driven with
# prost-build by the throwaway cargo project in tools/onnx_proto/: no protoc and no build.rs,
# neither here nor when convnet builds. The generated files are committed.
#
#     tools/gen_onnx_proto.sh
#
# To move to a newer onnx.proto: copy onnx/onnx.proto from the `onnx` PyPI package over
# crates/convnet-onnx/proto/onnx.proto, update the version in the README beside it, and run
# this script.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
crate="$root/crates/convnet-onnx"
target="${CARGO_TARGET_DIR:-$root/target}/gen-onnx-proto"

cargo run --quiet --release --manifest-path "$root/tools/onnx_proto/Cargo.toml" \
    --target-dir "$target" -- "$crate/proto" "$crate/src/proto"
# prost-build names the file after the proto package.
rustfmt --edition 2024 "$crate/src/proto/onnx.rs" "$crate/src/proto/layout.rs"
echo "wrote $crate/src/proto/onnx.rs and layout.rs"
