#!/usr/bin/env bash
# Side-by-side image-filtering speed, convnet vs OpenCV's cv2.filter2D, on this machine in
# this session: a 3840x2160 RGB float image, 3x3, 5x5 and 7x7 kernels, three border modes.
# Both run ROUNDS times, interleaved, and each row keeps its best time. Needs
# opencv-python-headless and numpy (see bench/opencv_filter.py) and a release build.
#
#   bench/compare-filter.sh [ROUNDS] [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
python=${2:-$HOME/.venv-torch/bin/python}
out=$(mktemp -d)
cargo build --release -q -p convnet-cli
bin=${CARGO_TARGET_DIR:-target}/release/convnet
compare=()
for i in $(seq "$rounds"); do
    "$python" bench/opencv_filter.py --json "$out/opencv-$i.json" > /dev/null
    "$bin" bench --filter --json "$out/convnet-$i.json" > /dev/null
    compare+=(--compare "$out/opencv-$i.json")
done
"$bin" bench --filter --repeat "$rounds" "${compare[@]}"
echo "(runs kept in $out)"
