"""Train-time augmentation on whole batches of tensors (runs on the GPU when the batch is there).

- HSV jitter: per image, hue shifted by up to ``hsv_h`` of the colour circle, saturation and
  value multiplied by gains in ``[1 - hsv_s, 1 + hsv_s]`` / ``[1 - hsv_v, 1 + hsv_v]``.
- Affine: per image, a scale in ``[1 - scale, 1 + scale]`` about the centre, a translation of up to
  ``translate * S`` pixels each way, and a horizontal flip with probability ``fliplr`` (0 by
  default: echo anatomy is not mirror-symmetric). Uncovered pixels get the padding grey 114/255.
  Boxes go through the same map, are clipped to the image, and are dropped when a side becomes
  shorter than ``MIN_SIDE`` pixels or less than ``MIN_VISIBLE`` of their area stays in the image.

HSV comes first so the padding stays exactly grey. Random draws use a CPU ``torch.Generator``
(a few numbers per image), so a seed gives the same augmentation on every device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.config import DataConfig

PAD = 114.0 / 255.0
MIN_SIDE = 2.0  # pixels
MIN_VISIBLE = 0.1  # fraction of a transformed box's area that must remain inside the image


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, H, W) HSV, hue in [0, 1)."""
    r, g, b = rgb.unbind(1)
    maxc, minc = rgb.amax(1), rgb.amin(1)  # (B, H, W)
    delta = maxc - minc
    safe = delta + (delta == 0)  # 1 on grey pixels, whose hue formula gives 0 / 1 = 0
    # the hue formula of whichever channel is largest
    hue = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = torch.remainder(hue / 6.0, 1.0)
    sat = delta / (maxc + (maxc == 0))  # 0 on black
    return torch.stack([hue, sat, maxc], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """(B, 3, H, W) HSV (hue in [0, 1)) -> (B, 3, H, W) RGB in [0, 1]."""
    h, s, v = hsv.unbind(1)
    # each channel n in (5, 3, 1) for (r, g, b): v - v s max(0, min(k, 4 - k, 1)), k = (n + 6h) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype)[None, :, None, None]
    k = (n + 6.0 * h[:, None]) % 6.0  # (B, 3, H, W)
    ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return v[:, None] - v[:, None] * s[:, None] * ramp


def hsv_jitter(images: Tensor, gains: Tensor) -> Tensor:
    """images (B, 3, H, W) in [0, 1]; gains (B, 3): hue shift, saturation gain, value gain."""
    hsv = rgb_to_hsv(images)
    h = (hsv[:, 0] + gains[:, 0, None, None]) % 1.0
    s = (hsv[:, 1] * gains[:, 1, None, None]).clamp(0.0, 1.0)
    v = (hsv[:, 2] * gains[:, 2, None, None]).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.stack([h, s, v], 1))


def affine(
    images: Tensor, targets: Tensor, scale: Tensor, shift: Tensor, flip: Tensor
) -> tuple[Tensor, Tensor]:
    """Scale about the centre, optionally flip, then shift, per image.

    images (B, 3, S, S); targets (K, 6) ``[batch_index, class, x1, y1, x2, y2]`` pixels;
    scale (B,), shift (B, 2) pixels, flip (B,) bool. A pixel point p moves to
    ``f * s * (p - S/2) + S/2 + t`` (f = -1 on x when flipped).
    """
    bsz, _, height, width = images.shape
    sign = 1.0 - 2.0 * flip.to(images.dtype)  # (B,) +1 or -1 on x
    # affine_grid maps output -> input in [-1, 1] units (align_corners=False: pixel edges at -1, 1)
    theta = torch.zeros(bsz, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = sign / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, 0, 2] = -sign * (2.0 * shift[:, 0] / width) / scale
    theta[:, 1, 2] = -(2.0 * shift[:, 1] / height) / scale
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, S, S, 2)
    # zeros padding, shifted so that uncovered pixels come out as the padding grey
    out = F.grid_sample(images - PAD, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + PAD

    if targets.numel() == 0:
        return out, targets
    b = targets[:, 0].long()
    s, f, t = scale[b], sign[b], shift[b]  # (K,), (K,), (K, 2)
    cx, cy = width / 2.0, height / 2.0
    xa = f * s * (targets[:, 2] - cx) + cx + t[:, 0]
    xb = f * s * (targets[:, 4] - cx) + cx + t[:, 0]
    y1 = s * (targets[:, 3] - cy) + cy + t[:, 1]
    y2 = s * (targets[:, 5] - cy) + cy + t[:, 1]
    x1, x2 = torch.minimum(xa, xb), torch.maximum(xa, xb)  # a flip swaps the edges
    area = (x2 - x1) * (y2 - y1)
    x1, x2 = x1.clamp(0, width), x2.clamp(0, width)
    y1, y2 = y1.clamp(0, height), y2.clamp(0, height)
    keep = ((x2 - x1) >= MIN_SIDE) & ((y2 - y1) >= MIN_SIDE) & ((x2 - x1) * (y2 - y1) >= MIN_VISIBLE * area)
    boxes = torch.stack([targets[:, 0], targets[:, 1], x1, y1, x2, y2], 1)  # (K, 6)
    return out, boxes[keep]


def augment_batch(
    images: Tensor, targets: Tensor, cfg: DataConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Augment a batch: images (B, 3, S, S) float in [0, 1]; targets (K, 6) pixels -> the same, augmented."""
    bsz, size = images.shape[0], images.shape[-1]
    # draws on the CPU, in a fixed order, then moved: identical for a seed on any device
    u = torch.rand(bsz, 7, generator=generator)  # (B, 7) uniforms in [0, 1)
    sym = 2.0 * u - 1.0  # (B, 7) in [-1, 1)
    gains = torch.stack([cfg.hsv_h * sym[:, 0], 1.0 + cfg.hsv_s * sym[:, 1], 1.0 + cfg.hsv_v * sym[:, 2]], 1)
    scale = 1.0 + cfg.scale * sym[:, 3]
    shift = cfg.translate * size * sym[:, 4:6]
    flip = u[:, 6] < cfg.fliplr
    dev, dt = images.device, images.dtype
    if cfg.hsv_h or cfg.hsv_s or cfg.hsv_v:
        images = hsv_jitter(images, gains.to(dev, dt))
    if cfg.scale or cfg.translate or cfg.fliplr:
        images, targets = affine(images, targets, scale.to(dev, dt), shift.to(dev, dt), flip.to(dev))
    return images, targets
