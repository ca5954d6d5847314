"""Re-runs our encoder (small-cnn or resnet18) from its model.safetensors with numpy only,
in eval mode.

Usage: check_weights_numpy.py MODEL.safetensors CASE.json

CASE.json holds ``input`` (flat float32 values), ``shape`` ([N, C, H, W]) and
``embedding`` (our encoder's flat [N, D] output for that input). The weights are read with
safetensors' numpy loader under the peer's ``SmallCNN`` state_dict names
(``features.{i}.0.weight``, ``features.{i}.1.{weight,bias,running_mean,running_var}``);
the forward is [3x3 convolution (padding 1, strides 1/2/2/2), batch norm with the running
statistics (eps 1e-5), ReLU] per block, then the mean over height and width, in float64.
A file with ``conv1.weight`` holds the CIFAR ResNet-18 under torchvision's names instead:
stem conv-BN-ReLU, then per BasicBlock relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut),
the shortcut being ``downsample`` (1x1 conv, BN) where present, stride 2 in the first
block of layer2-4.
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


def conv(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """Cross-correlation of a square k x k kernel with padding k // 2, through the k*k
    shifted input windows (im2col)."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    pad = k // 2
    out_h, out_w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.empty((n, c, k, k, out_h, out_w), dtype=x.dtype)
    for ky in range(k):
        for kx in range(k):
            windows[:, :, ky, kx] = padded[:, :, ky:ky + stride * out_h:stride,
                                           kx:kx + stride * out_w:stride]
    return np.einsum("ncyxhw,ocyx->nohw", windows, weight.astype(np.float64))


def batch_norm_eval(x: np.ndarray, weights: dict, prefix: str) -> np.ndarray:
    shape = (1, -1, 1, 1)
    mean = weights[f"{prefix}.running_mean"].astype(np.float64).reshape(shape)
    var = weights[f"{prefix}.running_var"].astype(np.float64).reshape(shape)
    scale = weights[f"{prefix}.weight"].astype(np.float64).reshape(shape)
    shift = weights[f"{prefix}.bias"].astype(np.float64).reshape(shape)
    return (x - mean) / np.sqrt(var + BN_EPS) * scale + shift


def small_cnn_forward(weights: dict, x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for i, stride in enumerate(STRIDES):
        h = conv(h, weights[f"features.{i}.0.weight"], stride)
        h = np.maximum(batch_norm_eval(h, weights, f"features.{i}.1"), 0.0)
    return h.mean(axis=(2, 3))


def resnet18_forward(weights: dict, x: np.ndarray) -> np.ndarray:
    h = np.maximum(batch_norm_eval(conv(x.astype(np.float64), weights["conv1.weight"], 1),
                                   weights, "bn1"), 0.0)
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            out = np.maximum(batch_norm_eval(conv(h, weights[f"{p}.conv1.weight"], stride),
                                             weights, f"{p}.bn1"), 0.0)
            out = batch_norm_eval(conv(out, weights[f"{p}.conv2.weight"], 1), weights,
                                  f"{p}.bn2")
            if f"{p}.downsample.0.weight" in weights:
                shortcut = batch_norm_eval(conv(h, weights[f"{p}.downsample.0.weight"], stride),
                                           weights, f"{p}.downsample.1")
            else:
                shortcut = h
            h = np.maximum(out + shortcut, 0.0)
    return h.mean(axis=(2, 3))


def main() -> int:
    weights = load_file(sys.argv[1])
    with open(sys.argv[2]) as f:
        case = json.load(f)

    resnet = "conv1.weight" in weights
    if not resnet:
        expected_names = {f"features.{i}.{part}" for i in range(len(STRIDES)) for part in
                          ["0.weight", "1.weight", "1.bias", "1.running_mean",
                           "1.running_var", "1.num_batches_tracked"]}
        missing = expected_names - set(weights)
        if missing:
            print(f"missing tensors: {sorted(missing)}")
            return 1

    x = np.asarray(case["input"], dtype=np.float32).reshape(case["shape"])
    ours = np.asarray(case["embedding"], dtype=np.float64).reshape(x.shape[0], -1)
    numpy_embedding = (resnet18_forward if resnet else small_cnn_forward)(weights, x)
    if numpy_embedding.shape != ours.shape:
        print(f"shape {numpy_embedding.shape} vs ours {ours.shape}")
        return 1

    diff = float(np.abs(numpy_embedding - ours).max())
    print(f"{'resnet18' if resnet else 'small-cnn'}: max abs diff {diff:.3e} over {ours.size} values "
          f"(max |embedding| {np.abs(ours).max():.3e})")
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
