#!/usr/bin/env python3
"""Time cv2.filter2D on a 3840x2160 RGB float32 image with 3x3, 5x5 and 7x7 kernels, the way
`convnet bench --filter` times `convnet filter`'s engine, so the two compare line by line.

    pip install opencv-python-headless numpy
    python3 bench/opencv_filter.py [--threads N] [--json FILE]

Both sides filter every channel with the same random kernel, 'same' output size, float32
output, for each border mode that both have (zeros = BORDER_CONSTANT, reflect =
BORDER_REFLECT_101, replicate = BORDER_REPLICATE). Each time is the best of three runs of
`reps` calls after two warm-up calls.
"""

import argparse
import json
import time

import cv2
import numpy as np

HEIGHT, WIDTH = 2160, 3840
BORDERS = {
    "zeros": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
}


def best_time(f, reps):
    f()
    f()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="cv2.setNumThreads (0: OpenCV's default)")
    parser.add_argument("--json", help="write the timings here")
    args = parser.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    img = rng.random((HEIGHT, WIDTH, 3), dtype=np.float32)
    rows = []
    print(f"OpenCV {cv2.__version__} filter2D, {cv2.getNumThreads()} thread(s), {WIDTH}x{HEIGHT} RGB float32")
    for border, code in BORDERS.items():
        for k in (3, 5, 7):
            kernel = rng.standard_normal((k, k)).astype(np.float32)
            seconds = best_time(lambda: cv2.filter2D(img, cv2.CV_32F, kernel, borderType=code), 5)
            name = f"{k}x{k}-{border}"
            rows.append({"name": name, "ms": seconds * 1e3})
            print(f"{name:14} {seconds * 1e3:8.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"engine": f"OpenCV {cv2.__version__}", "threads": cv2.getNumThreads(),
                       "filters": rows}, f, indent=2)


if __name__ == "__main__":
    main()
