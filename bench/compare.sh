#!/usr/bin/env bash
# Side-by-side conv-suite speed, convnet vs PyTorch, on this machine in this session.
# These machines are noisy: both engines run ROUNDS times, interleaved, and each layer keeps
# its best time. Needs PyTorch (see bench/torch_conv_suite.py) and a release build.
#
#   bench/compare.sh [ROUNDS] [TORCH_PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
python=${2:-$HOME/.venv-torch/bin/python}
threads=$(nproc)
out=$(mktemp -d)
cargo build --release -q -p convnet-cli
bin=${CARGO_TARGET_DIR:-target}/release/convnet
compare=()
for i in $(seq "$rounds"); do
    "$python" bench/torch_conv_suite.py --threads "$threads" --json "$out/torch-$i.json" > /dev/null
    "$bin" bench --json "$out/convnet-$i.json" > /dev/null
    compare+=(--compare "$out/torch-$i.json")
done
"$bin" bench --repeat "$rounds" "${compare[@]}"
echo "(runs kept in $out)"
