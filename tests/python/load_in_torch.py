"""Loads our SimCLR model.safetensors into the PyTorch peer's modules and compares outputs.

Usage (needs torch, so the peers' venv, plus the ``safetensors`` package):

    python tests/python/load_in_torch.py MODEL.safetensors CASE.json [--peers DIR]

``CASE.json`` is what ``crates/latent-train/tests/python_weights.rs`` writes when
``LATENT_WEIGHTS_CASE_DIR`` is set: an input batch and our encoder's eval-mode embeddings.
A small-cnn file's ``features.*`` tensors go into the peer's ``SmallCNN`` with
``load_state_dict(strict=True)`` (so every name and shape must match its state_dict), the
``head.*`` tensors into the peer's ``projection_head`` (also strict); the encoder then
embeds the batch in eval mode and the largest absolute difference from ours is printed.
A resnet18 file (``conv1.weight``; width 1) goes into torchvision's ``resnet18()`` with
``conv1`` a 3x3 stride-1 convolution and ``maxpool`` / ``fc`` replaced by ``nn.Identity()``.
Exits 1 when it exceeds 1e-5 or a name is missing or left over.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

TOLERANCE = 1e-5


def resnet18_encoder(state: dict) -> tuple[torch.nn.Module, dict]:
    """torchvision's ResNet-18 made CIFAR-style, and our file's tensors that belong to it."""
    from torchvision.models import resnet18

    model = resnet18()
    model.conv1 = torch.nn.Conv2d(state["conv1.weight"].shape[1], 64, 3, stride=1, padding=1,
                                  bias=False)
    model.maxpool = torch.nn.Identity()
    model.fc = torch.nn.Identity()
    names = set(model.state_dict())
    return model, {k: v for k, v in state.items() if k in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("case", type=Path)
    parser.add_argument("--peers", type=Path,
                        default=Path(__file__).resolve().parents[3] / "shared" / "peers",
                        help="folder of the peer scripts (default ../shared/peers)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.peers))
    from simclr_torch import projection_head
    from torch_common import SmallCNN

    state = load_file(args.model)
    if "conv1.weight" in state:
        encoder, encoder_state = resnet18_encoder(state)
    else:
        encoder_state = {k: v for k, v in state.items() if k.startswith("features.")}
        encoder = SmallCNN(in_channels=encoder_state["features.0.0.weight"].shape[1])
    head_state = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
    left_over = set(state) - set(encoder_state) - {f"head.{k}" for k in head_state}
    if left_over:
        print(f"tensors neither encoder nor head: {sorted(left_over)}")
        return 1

    encoder.load_state_dict(encoder_state, strict=True)
    hidden_layers = (len([k for k in head_state if k.endswith("running_mean")]))
    head = projection_head("3layer" if hidden_layers == 2 else "2layer",
                           in_dim=head_state["0.weight"].shape[1], hidden=head_state["0.weight"].shape[0],
                           out_dim=head_state[f"{3 * hidden_layers}.weight"].shape[0])
    head.load_state_dict(head_state, strict=True)
    print(f"loaded {len(encoder_state)} encoder and {len(head_state)} head tensors "
          f"with strict=True")

    case = json.loads(args.case.read_text())
    images = torch.tensor(case["input"], dtype=torch.float32).reshape(case["shape"])
    ours = torch.tensor(case["embedding"], dtype=torch.float32).reshape(images.shape[0], -1)
    encoder.eval()
    with torch.no_grad():
        theirs = encoder(images)

    diff = (theirs - ours).abs().max().item()
    print(f"PyTorch {type(encoder).__name__} (eval) vs ours: max abs diff {diff:.3e} over {ours.numel()} "
          f"values (max |embedding| {ours.abs().max().item():.3e})")
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
