"""MLP and CNN builders from a validated model config dict (see core.sections.MLPConfig/CNNConfig).

Every architecture in the write-ups hpsweep started from is one config:

* MNIST CNN (000): ``{"arch": "cnn", "channels": [40, 104], "fc": [150], "dropout": 0.46,
  "batch_norm": False, "activation": "relu"}``
* MNIST CNN (004): ``{"arch": "cnn", "channels": [32, 32, 64, 64], "activation": "silu"}``
  (4 convs 32 -> 64; or ``channels=[32, 64], convs_per_block=2``)
* Tiny ImageNet residual CNN (002): ``{"arch": "cnn", "channels": [64, 128, 256, 256],
  "residual": True, "head": "gap", "fc": [512], "dropout": 0.3, "activation": "relu"}``
* MLPs (001, 003, 004): ``{"arch": "mlp", "depth": 2, "width": 512, "activation": "silu"}``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"activation {name!r} is not one of {', '.join(_ACTIVATIONS)}"
        ) from None


def _mlp(cfg: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> nn.Module:
    depth = int(cfg.get("depth", 2))
    width = cfg.get("width", 512)
    widths = list(width) if isinstance(width, list | tuple) else [int(width)] * depth
    if len(widths) != depth:
        raise ValueError(f"width list {widths} has {len(widths)} entries but depth is {depth}")
    bn = bool(cfg.get("batch_norm", True))
    dropout = float(cfg.get("dropout", 0.0))
    act = cfg.get("activation", "silu")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 1
    for d in input_shape:
        fan_in *= int(d)
    for w in widths:
        # The BN shift makes a bias redundant.
        layers.append(nn.Linear(fan_in, w, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm1d(w))
        layers.append(_activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = w
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


class ConvBlock(nn.Module):
    """``convs_per_block`` x (conv -> [BN] -> act), optionally residual, then optional pooling.

    With ``residual`` the shortcut (identity, or a 1x1 conv [+ BN] when the channel count
    changes) is added before the last activation, as in a ResNet basic block.
    """

    def __init__(self, c_in: int, c_out: int, *, convs: int, kernel_size: int, batch_norm: bool,
                 activation: str, residual: bool, pool: nn.Module | None):
        super().__init__()
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        c = c_in
        for i in range(convs):
            layers.append(nn.Conv2d(c, c_out, kernel_size, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            if not (residual and i == convs - 1):
                layers.append(_activation(activation))
            c = c_out
        self.body = nn.Sequential(*layers)
        self.residual = residual
        self.shortcut: nn.Module | None = None
        if residual:
            if c_in != c_out:
                sc: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, bias=not batch_norm)]
                if batch_norm:
                    sc.append(nn.BatchNorm2d(c_out))
                self.shortcut = nn.Sequential(*sc)
            else:
                self.shortcut = nn.Identity()
            self.out_act = _activation(activation)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.residual:
            y = self.out_act(y + self.shortcut(x))
        if self.pool is not None:
            y = self.pool(y)
        return y


def _cnn(cfg: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> nn.Module:
    c_in, h, w = (int(d) for d in input_shape)
    channels = [int(c) for c in cfg.get("channels", [32, 64])]
    if not channels:
        raise ValueError("cnn needs at least one entry in channels")
    k = int(cfg.get("kernel_size", 3))
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding), got {k}")
    pool_kind = cfg.get("pool", "max")
    bn = bool(cfg.get("batch_norm", True))
    act = cfg.get("activation", "silu")
    dropout = float(cfg.get("dropout", 0.0))
    head = cfg.get("head", "flatten")
    blocks: list[nn.Module] = []
    for c_out in channels:
        pool: nn.Module | None = None
        # Pool (2x2, stride 2) unless that would leave less than 2x2 pixels.
        if pool_kind != "none" and h // 2 >= 2 and w // 2 >= 2:
            pool = nn.MaxPool2d(2) if pool_kind == "max" else nn.AvgPool2d(2)
            h, w = h // 2, w // 2
        blocks.append(ConvBlock(c_in, c_out, convs=int(cfg.get("convs_per_block", 1)),
                                kernel_size=k, batch_norm=bn, activation=act,
                                residual=bool(cfg.get("residual", False)), pool=pool))
        c_in = c_out
    layers: list[nn.Module] = [*blocks]
    if head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        fan_in = c_in
    elif head == "flatten":
        layers.append(nn.Flatten())
        fan_in = c_in * h * w
    else:
        raise ValueError(f"head {head!r} is not 'flatten' or 'gap'")
    fc = [int(v) for v in cfg.get("fc", [128])]
    # Dropout follows each hidden FC layer (or, without any, sits before the classifier).
    if dropout > 0 and not fc:
        layers.append(nn.Dropout(dropout))
    for width in fc:
        layers += [nn.Linear(fan_in, width), _activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def build_model(model_cfg: dict[str, Any], input_shape: tuple[int, int, int],
                num_classes: int) -> nn.Module:
    """Build the model a (validated) ``run_cfg["model"]`` dict describes.

    ``input_shape`` is (C, H, W) of one image; the result maps [N, C, H, W] float
    images to [N, num_classes] logits.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    arch = model_cfg.get("arch", "mlp")
    if arch == "mlp":
        return _mlp(model_cfg, input_shape, num_classes)
    if arch == "cnn":
        return _cnn(model_cfg, input_shape, num_classes)
    raise ValueError(f"model.arch {arch!r} is not 'mlp' or 'cnn'")


def is_conv(model_cfg: dict[str, Any]) -> bool:
    return model_cfg.get("arch") == "cnn"


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
