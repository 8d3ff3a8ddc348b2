#!/usr/bin/env python3
"""OpenCV and SciPy filtering fixtures for `convnet filter` (and the photograph they use).

    pip install opencv-python-headless scipy scikit-image numpy safetensors
    python3 tools/gen_filter_fixtures.py

Writes
  data/astronaut.png   scikit-image's `astronaut` (Eileen Collins, NASA; public domain),
                       resized to 256x256 with INTER_AREA: the photograph of the examples.
  crates/convnet/tests/fixtures/filter_opencv.safetensors:
    input                      [3, 48, 48]  a crop of data/astronaut.png (rows 40.., cols 100..),
                                            as float32 in [0, 1] (pixel / 255)
    kernel/{k}                 [k, k]       fixed random kernels, k = 3, 5, 7
    correlate/{k}/{border}     [3, 48, 48]  cv2.filter2D(img, CV_32F, kernel) per border mode
    convolve/{k}/zeros         [3, 48, 48]  scipy.ndimage.convolve(mode="constant"), checked
                                            here against filter2D with the flipped kernel

Border modes: zeros = BORDER_CONSTANT, reflect = BORDER_REFLECT_101, replicate =
BORDER_REPLICATE, circular = BORDER_WRAP (filter2D refuses BORDER_WRAP, so the image is
wrapped with copyMakeBorder first and filtered without further padding).
"""

import os

import cv2
import numpy as np
import scipy.ndimage
import skimage.data
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "data", "astronaut.png")
FIXTURE = os.path.join(ROOT, "crates", "convnet", "tests", "fixtures", "filter_opencv.safetensors")
CROP = (40, 100, 48)  # top, left, size

BORDERS = {
    "zeros": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
}


def correlate(img, kernel, border):
    p = kernel.shape[0] // 2
    if border == "circular":
        padded = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_WRAP)
        out = cv2.filter2D(padded, cv2.CV_32F, kernel, borderType=cv2.BORDER_CONSTANT)
        return out[p:-p, p:-p]
    return cv2.filter2D(img, cv2.CV_32F, kernel, borderType=BORDERS[border])


def main():
    photo = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    # skimage gives RGB; OpenCV writes BGR.
    cv2.imwrite(PHOTO, cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    back = cv2.cvtColor(cv2.imread(PHOTO, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert (back == photo).all()
    top, left, n = CROP
    img = (photo[top:top + n, left:left + n].astype(np.float32) / np.float32(255.0))
    out = {"input": np.ascontiguousarray(img.transpose(2, 0, 1))}
    rng = np.random.default_rng(0)
    for k in (3, 5, 7):
        kernel = rng.standard_normal((k, k)).astype(np.float32) / np.float32(k)
        out[f"kernel/{k}"] = kernel
        for border in ("zeros", "reflect", "replicate", "circular"):
            res = correlate(img, kernel, border)
            out[f"correlate/{k}/{border}"] = np.ascontiguousarray(res.transpose(2, 0, 1))
        conv = np.stack([scipy.ndimage.convolve(img[:, :, c].astype(np.float64), kernel.astype(np.float64),
                                                mode="constant", cval=0.0) for c in range(3)])
        flipped = cv2.filter2D(img, cv2.CV_32F, np.ascontiguousarray(kernel[::-1, ::-1]),
                               borderType=cv2.BORDER_CONSTANT).transpose(2, 0, 1)
        assert np.abs(conv - flipped).max() < 1e-5, np.abs(conv - flipped).max()
        out[f"convolve/{k}/zeros"] = conv.astype(np.float32)
    save_file(out, FIXTURE)
    print(f"wrote {os.path.relpath(PHOTO, ROOT)} ({os.path.getsize(PHOTO)} bytes) and "
          f"{os.path.relpath(FIXTURE, ROOT)} ({len(out)} tensors, {os.path.getsize(FIXTURE)} bytes)")


if __name__ == "__main__":
    main()
