"""Re-runs our small-cnn encoder from its model.safetensors with numpy only, in eval mode.

Usage: check_weights_numpy.py MODEL.safetensors CASE.json

CASE.json holds ``input`` (flat float32 values), ``shape`` ([N, C, H, W]) and
``embedding`` (our encoder's flat [N, D] output for that input). The weights are read with
safetensors' numpy loader under the peer's ``SmallCNN`` state_dict names
(``features.{i}.0.weight``, ``features.{i}.1.{weight,bias,running_mean,running_var}``);
the forward is [3x3 convolution (padding 1, strides 1/2/2/2), batch norm with the running
statistics (eps 1e-5), ReLU] per block, then the mean over height and width, in float64.
Exits 1 when the largest absolute difference from ``embedding`` exceeds 1e-5.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from safetensors.numpy import load_file

STRIDES = [1, 2, 2, 2]
BN_EPS = 1e-5
TOLERANCE = 1e-5


def conv3x3(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """Cross-correlation with padding 1, through the 9 shifted input windows (im2col)."""
    n, c, h, w = x.shape
    out_h, out_w = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.empty((n, c, 3, 3, out_h, out_w), dtype=x.dtype)
    for ky in range(3):
        for kx in range(3):
            windows[:, :, ky, kx] = padded[:, :, ky:ky + stride * out_h:stride,
                                           kx:kx + stride * out_w:stride]
    return np.einsum("ncyxhw,ocyx->nohw", windows, weight)


def batch_norm_eval(x: np.ndarray, weights: dict, prefix: str) -> np.ndarray:
    shape = (1, -1, 1, 1)
    mean = weights[f"{prefix}.running_mean"].astype(np.float64).reshape(shape)
    var = weights[f"{prefix}.running_var"].astype(np.float64).reshape(shape)
    scale = weights[f"{prefix}.weight"].astype(np.float64).reshape(shape)
    shift = weights[f"{prefix}.bias"].astype(np.float64).reshape(shape)
    return (x - mean) / np.sqrt(var + BN_EPS) * scale + shift


def encoder_forward(weights: dict, x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for i, stride in enumerate(STRIDES):
        h = conv3x3(h, weights[f"features.{i}.0.weight"].astype(np.float64), stride)
        h = np.maximum(batch_norm_eval(h, weights, f"features.{i}.1"), 0.0)
    return h.mean(axis=(2, 3))


def main() -> int:
    weights = load_file(sys.argv[1])
    with open(sys.argv[2]) as f:
        case = json.load(f)

    expected_names = {f"features.{i}.{part}" for i in range(len(STRIDES)) for part in
                      ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                       "1.num_batches_tracked"]}
    missing = expected_names - set(weights)
    if missing:
        print(f"missing tensors: {sorted(missing)}")
        return 1

    x = np.asarray(case["input"], dtype=np.float32).reshape(case["shape"])
    ours = np.asarray(case["embedding"], dtype=np.float64).reshape(x.shape[0], -1)
    numpy_embedding = encoder_forward(weights, x)
    if numpy_embedding.shape != ours.shape:
        print(f"shape {numpy_embedding.shape} vs ours {ours.shape}")
        return 1

    diff = float(np.abs(numpy_embedding - ours).max())
    print(f"max abs diff {diff:.3e} over {ours.size} values "
          f"(max |embedding| {np.abs(ours).max():.3e})")
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
