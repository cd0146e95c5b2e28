"""Batch-level data augmentation: whole-batch tensor ops, random draws on the device.

none          identity
shift         random translation by up to +-2 px (edge-replicate padding + random crop)
shift_rotate  random rotation up to +-10 degrees and translation up to +-2 px
              (one affine_grid/grid_sample over the batch, border padding)
shift_flip    shift + random horizontal flip (images whose mirror is the same class:
              Fashion-MNIST's clothes and shoes, not digits)
crop_flip     pad 4 (reflect) + random crop + random horizontal flip (natural images)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

SHIFT_PX = 2
ROTATE_DEG = 10.0
CROP_PAD = 4


def random_crop(xp: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A random h x w window of each image of a padded batch (two gathers, no Python loop)."""
    b, c, hp, wp = xp.shape
    dev = xp.device
    oy = torch.randint(0, hp - h + 1, (b,), device=dev)
    ox = torch.randint(0, wp - w + 1, (b,), device=dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None].expand(b, c, h, wp)
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :].expand(b, c, h, w)
    return xp.gather(2, rows).gather(3, cols)


def shift(x: torch.Tensor, px: int = SHIFT_PX) -> torch.Tensor:
    h, w = x.shape[-2:]
    return random_crop(F.pad(x, (px, px, px, px), mode="replicate"), h, w)


def shift_rotate(x: torch.Tensor, px: int = SHIFT_PX, deg: float = ROTATE_DEG) -> torch.Tensor:
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    ang = (torch.rand(b, device=dev, dtype=dt) * 2 - 1) * math.radians(deg)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2/W wide.
    tx = (torch.rand(b, device=dev, dtype=dt) * 2 - 1) * (2 * px / w)
    ty = (torch.rand(b, device=dev, dtype=dt) * 2 - 1) * (2 * px / h)
    cos, sin = ang.cos(), ang.sin()
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def shift_flip(x: torch.Tensor, px: int = SHIFT_PX) -> torch.Tensor:
    return random_hflip(shift(x, px))


def crop_flip(x: torch.Tensor, pad: int = CROP_PAD) -> torch.Tensor:
    h, w = x.shape[-2:]
    mode = "reflect" if pad < min(h, w) else "replicate"
    return random_hflip(random_crop(F.pad(x, (pad, pad, pad, pad), mode=mode), h, w))


AUGMENTS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "none": None,
    "shift": shift,
    "shift_rotate": shift_rotate,
    "shift_flip": shift_flip,
    "crop_flip": crop_flip,
}


def get_augment(name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        return AUGMENTS[name]
    except KeyError:
        raise ValueError(f"train.augment {name!r} is not one of {', '.join(AUGMENTS)}") from None
