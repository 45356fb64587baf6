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

Speed (a batch of 16 x 320 px on a CPU core): the HSV jitter never materialises the HSV image and
works in cache-sized chunks, the sampling grid is built per row and column (the map has no
rotation or shear), and the padding offset is folded into the HSV output; see
``python -m study.benchmarks.data`` for the figures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.config import DataConfig

PAD = 114.0 / 255.0
MIN_SIDE = 2.0  # pixels
MIN_VISIBLE = 0.1  # fraction of a transformed box's area that must remain inside the image
CPU_CHUNK_PIXELS = 2**18  # HSV jitter on the CPU: pixels per chunk and thread (4 float planes: 4 MiB)


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
    """images (B, 3, H, W) in [0, 1]; gains (B, 3): hue shift, saturation gain, value gain.

    Equal (to float rounding) to ``hsv_to_rgb`` of the jittered ``rgb_to_hsv``, computed without
    materialising the HSV image (see ``_hsv_jitter_into``).
    """
    return _hsv_jitter(images, gains, bias=0.0)


def _hsv_jitter(images: Tensor, gains: Tensor, bias: float) -> Tensor:
    """The jittered images minus ``bias`` (B, 3, H, W), a fresh tensor; ``images`` is left as it is.

    On the CPU the batch goes through in chunks of about ``CPU_CHUNK_PIXELS`` pixels per thread with
    one scratch buffer: it stays in cache, and its pages are touched once (fresh large allocations
    cost a page fault per 4 KiB, which is most of the time of a naive version). Elsewhere (CUDA)
    the whole batch is one chunk.
    """
    bsz, _, height, width = images.shape
    # per thread: each elementwise op is split between torch's threads, and each split is a
    # synchronisation (costly when the cores are oversubscribed), so more threads take bigger chunks
    chunk_pixels = CPU_CHUNK_PIXELS * torch.get_num_threads()
    per_chunk = bsz if images.device.type != "cpu" else max(1, chunk_pixels // (height * width))
    per_chunk = min(per_chunk, bsz)
    out = torch.empty_like(images, memory_format=torch.contiguous_format)  # (B, 3, H, W)
    scratch = torch.empty((4, per_chunk, height, width), dtype=images.dtype, device=images.device)
    # per image and channel, where the channel's ramp is centred on the hue circle (see below)
    shift = torch.remainder(gains[:, 0] + 0.5, 1.0) - 0.5  # (B,) hue shift in turns, in [-0.5, 0.5)
    centre = torch.tensor([0.0, 2.0, 4.0], device=images.device, dtype=images.dtype)  # r, g, b peaks, sixths
    offset = (6.0 * shift[:, None] - centre + 9.0) / 6.0  # (B, 3)
    for start in range(0, bsz, per_chunk):
        end = min(start + per_chunk, bsz)
        _hsv_jitter_into(out[start:end], images[start:end], gains[start:end], offset[start:end],
                         scratch[:, : end - start], bias)
    return out


def _hsv_jitter_into(out: Tensor, x: Tensor, gains: Tensor, offset: Tensor, scratch: Tensor, bias: float) -> None:
    """Write the HSV-jittered ``x`` (n, 3, H, W) minus ``bias`` into ``out`` (n, 3, H, W).

    gains (n, 3); offset (n, 3): per channel, (6 * hue shift - centre + 9) / 6 with the centre of
    the channel's ramp in sixths of the hue circle; scratch (4, n, H, W), overwritten.
    In sixths, with M = max, d = max - min of a pixel, the hue is H = (g - b)/d on red-largest
    pixels, 2 + (b - r)/d on green-largest, 4 + (r - g)/d on blue-largest (0 on grey). The output
    channel c is V' - V' S' ramp_c with ramp_c = clamp(|H + 6 shift - centre_c| - 1, 0, 1), the
    distance |.| taken around the circle: the same formula as ``hsv_to_rgb``, written in distances
    from each channel's peak so that no hue needs wrapping except one ``frac`` per channel.
    """
    tiny = torch.finfo(x.dtype).tiny
    r, g, b = x.unbind(1)  # (n, H, W) each
    maxc, delta, hue, tmp = scratch.unbind(0)  # (n, H, W) each
    not_r, not_g = out[:, 1], out[:, 2]  # borrowed: the channels are written last, after these are used
    torch.amax(x, 1, out=maxc)
    torch.sub(maxc, torch.amin(x, 1, out=delta), out=delta)  # max - min
    torch.sub(maxc, r, out=not_r).sign_()  # 0 where red is the largest, else 1 (ties go to red)
    torch.sub(maxc, g, out=not_g).sign_()  # 0 where green is the largest
    # hue * d: (g - b) if red is largest; else (b - r + 2d) if green is; else (r - g + 4d)
    torch.sub(g, b, out=hue).addcmul_(hue, not_r, value=-1.0)
    torch.sub(b, r, out=tmp).add_(delta, alpha=2.0).mul_(not_r)
    hue.add_(tmp).addcmul_(tmp, not_g, value=-1.0)
    torch.sub(r, g, out=tmp).add_(delta, alpha=4.0).mul_(not_r)
    hue.addcmul_(tmp, not_g)
    hue.div_(torch.clamp_min(delta, tiny, out=tmp).mul_(6.0))  # hue in turns, in (-1/6, 1)
    val = torch.mul(maxc, gains[:, 2, None, None], out=tmp).clamp_(0.0, 1.0)  # V'
    chroma = delta.div_(maxc.clamp_min_(tiny)).mul_(gains[:, 1, None, None]).clamp_(0.0, 1.0).mul_(val)  # V' S'
    # V' - V'S' clamp(6 a - 1, 0, 1) = (V' + V'S') - 6 V'S' clamp(a, 1/6, 1/3), a = |position - 1/2|
    top = val.add_(chroma).sub_(bias)  # V' + V'S' - bias
    chroma.mul_(6.0)
    # per channel, the position on the circle relative to the channel's peak, + 1/2, in [0, 1)
    ramp = torch.add(hue[:, None], offset[:, :, None, None], out=out).frac_()  # (n, 3, H, W)
    ramp.sub_(0.5).abs_().clamp_(1.0 / 6.0, 1.0 / 3.0)
    torch.addcmul(top[:, None], chroma[:, None], ramp, value=-1.0, out=out)


def affine(
    images: Tensor, targets: Tensor, scale: Tensor, shift: Tensor, flip: Tensor
) -> tuple[Tensor, Tensor]:
    """Scale about the centre, optionally flip, then shift, per image.

    images (B, 3, S, S); targets (K, 6) ``[batch_index, class, x1, y1, x2, y2]`` pixels;
    scale (B,), shift (B, 2) pixels, flip (B,) bool. A pixel point p moves to
    ``f * s * (p - S/2) + S/2 + t`` (f = -1 on x when flipped).
    """
    return _affine(images - PAD, targets, scale, shift, flip)


def _affine(below_pad: Tensor, targets: Tensor, scale: Tensor, shift: Tensor, flip: Tensor) -> tuple[Tensor, Tensor]:
    """``affine`` of images given minus ``PAD`` (B, 3, S, S); returns the warped images (not minus PAD)."""
    bsz, _, height, width = below_pad.shape
    sign = 1.0 - 2.0 * flip.to(below_pad.dtype)  # (B,) +1 or -1 on x
    # grid_sample reads output -> input in [-1, 1] units (align_corners=False: pixel edges at -1, 1).
    # With no rotation or shear, x depends on the column only and y on the row only, so the grid is
    # two broadcast writes (F.affine_grid would do a batched matmul over every pixel).
    dev, dt = below_pad.device, below_pad.dtype
    xs = (2.0 * torch.arange(width, device=dev, dtype=dt) + 1.0) / width - 1.0  # (W,) pixel centres
    ys = (2.0 * torch.arange(height, device=dev, dtype=dt) + 1.0) / height - 1.0  # (H,)
    gx = (sign / scale)[:, None] * xs - (sign * (2.0 * shift[:, 0] / width) / scale)[:, None]  # (B, W)
    gy = (1.0 / scale)[:, None] * ys - ((2.0 * shift[:, 1] / height) / scale)[:, None]  # (B, H)
    grid = torch.empty(bsz, height, width, 2, device=dev, dtype=dt)  # (B, S, S, 2)
    grid[..., 0] = gx[:, None, :]
    grid[..., 1] = gy[:, :, None]
    # zeros padding on pixels minus PAD, so that uncovered pixels come out as the padding grey
    out = F.grid_sample(below_pad, grid, mode="bilinear", padding_mode="zeros", align_corners=False).add_(PAD)

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
    warp = bool(cfg.scale or cfg.translate or cfg.fliplr)
    if cfg.hsv_h or cfg.hsv_s or cfg.hsv_v:
        # the warp samples pixels minus PAD: the jitter writes them so, saving a pass over the batch
        images = _hsv_jitter(images, gains.to(dev, dt), bias=PAD if warp else 0.0)
    elif warp:
        images = images - PAD
    if warp:
        images, targets = _affine(images, targets, scale.to(dev, dt), shift.to(dev, dt), flip.to(dev))
    return images, targets
