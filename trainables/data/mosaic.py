"""Mosaic augmentation (YOLOv5's ``load_mosaic`` + ``random_perspective``) on whole batches of tensors.

Each output image i is built from four frames of the batch: frame i itself and three partners.

1. **Canvas** (YOLOv5 ``load_mosaic``): a 2S x 2S canvas of padding grey 114/255 and a centre
   ``(xc, yc)``, integers drawn uniformly in ``[S/2, 3S/2)``. Frame i is placed so that its
   bottom-right corner sits on the centre (top-left quadrant); the partners likewise touch the
   centre from the top-right, bottom-left and bottom-right. Each frame is cut at the centre lines
   and at the canvas edge: what is left of it on the canvas is its *tile*. Boxes move with their
   frame and are clipped to their tile (a frame never reaches past the centre lines, so only the
   canvas edge cuts boxes here).
2. **Affine** (YOLOv5 ``random_perspective`` with ``border = -S/2``, no rotation, shear or
   perspective): a canvas point p goes to ``s * (p - S) + S/2 + t``, s ~ U(1 - scale, 1 + scale),
   t ~ U(-translate * S, translate * S) per axis, and the output is the S x S window. YOLOv5 writes
   the same map as ``T @ S @ C`` with ``C`` moving the canvas centre to the origin and
   ``T = (0.5 + U(-translate, translate)) * S``. Boxes are clipped to ``[0, S]`` and dropped when a
   side is under ``MIN_SIDE`` pixels or less than ``min_box_frac`` of the box's area in its *source
   frame* (times s^2) remains: YOLOv5 compares with the box after the canvas clip instead, which
   keeps slivers of objects cut by the canvas edge; we drop them (a tenth of a jet is not a jet).

Views: with ``same_view=True`` (default) partners are drawn only among frames of the anchor's view,
so the view label of a mosaic stays true. With ``same_view=False`` partners come from the whole
batch and ``view_valid[i]`` says whether every tile *visible in the output* has view ``views[i]``;
the caller drops the view loss where it is False.

Random draws come from a CPU ``torch.Generator`` (a fixed number per image, in a fixed order), so a
seed gives the same mosaics on every device. The canvas is built by slicing (4 copies per image)
and mapped to the output with one ``grid_sample`` over the whole batch, as ``augment.py`` does.

This is our own code written from the description of the method (YOLOv5 is AGPL); names of
YOLOv5 functions are given only to say which step corresponds to which.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.data.augment import MIN_SIDE, MIN_VISIBLE, PAD

TILES = 4  # 0 top-left (the anchor frame), 1 top-right, 2 bottom-left, 3 bottom-right
DRAWS = 8  # uniforms per image: 3 partners, centre x, y, scale, translate x, y


def draw_partners(views: Tensor, u: Tensor, same_view: bool) -> Tensor:
    """The frames of each mosaic: (B, 4) int64 batch indices, column 0 the anchor itself.

    views (B,) int64 (CPU); u (B, 3) uniforms in [0, 1). Partners are drawn with replacement among
    the other frames of the batch (of the anchor's view when ``same_view``); an anchor with no
    other candidate is its own partner.
    """
    bsz = views.shape[0]
    idx = torch.arange(bsz)
    cand = idx[None, :] != idx[:, None]  # (B, B) j != i
    if same_view:
        cand &= views[None, :] == views[:, None]
    count = cand.sum(1)  # (B,)
    # candidates first, in index order; the r-th candidate of row i is order[i, r]
    order = torch.argsort((~cand).to(torch.int8), dim=1, stable=True)  # (B, B)
    pick = torch.minimum((u * count[:, None]).long(), (count - 1).clamp_min(0)[:, None])  # (B, 3)
    partners = torch.gather(order, 1, pick)  # (B, 3)
    partners = torch.where(count[:, None] > 0, partners, idx[:, None])
    return torch.cat([idx[:, None], partners], 1)


def draw_centres(size: int, u: Tensor) -> Tensor:
    """(B, 2) int64 mosaic centres (xc, yc) in ``[S // 2, 2S - S // 2)`` from uniforms u (B, 2)."""
    lo, hi = size // 2, 2 * size - size // 2
    return lo + (u * (hi - lo)).long().clamp_max(hi - lo - 1)


def tile_layout(size: int, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Where the four frames of each mosaic sit on the 2S x 2S canvas.

    centres (B, 2) int64 ``(xc, yc)``. Returns ``origins`` (B, 4, 2) int64: the canvas position of
    each frame's top-left pixel (may be negative), and ``tiles`` (B, 4, 4) int64
    ``[x1, y1, x2, y2]``: the part of each frame left on the canvas (its frame cut at the centre
    lines and the canvas edge), i.e. YOLOv5's ``x1a, y1a, x2a, y2a``.
    """
    xc, yc = centres[:, 0, None], centres[:, 1, None]  # (B, 1)
    right = torch.tensor([0, 1, 0, 1])  # (4,) frame on the right of the centre line
    below = torch.tensor([0, 0, 1, 1])
    ox = xc - size + right * size  # (B, 4) frames touch the centre: left ones end at xc, right ones start there
    oy = yc - size + below * size
    # each frame clipped to its quadrant of the canvas
    x1 = torch.maximum(ox, right * xc)
    x2 = torch.minimum(ox + size, torch.where(right.bool(), 2 * size, xc))
    y1 = torch.maximum(oy, below * yc)
    y2 = torch.minimum(oy + size, torch.where(below.bool(), 2 * size, yc))
    return torch.stack([ox, oy], 2), torch.stack([x1, y1, x2, y2], 2)


def mosaic_canvas(
    images: Tensor, targets: Tensor, sources: Tensor, centres: Tensor, bias: float = 0.0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Place the frames of each mosaic on a 2S x 2S canvas (YOLOv5 ``load_mosaic``).

    images (B, 3, S, S) in [0, 1]; targets (K, 6) ``[batch_index, class, x1, y1, x2, y2]`` pixels;
    sources (M, 4) int64 frame of each tile (see ``draw_partners``); centres (B, 2) int64.
    Returns ``canvas`` (B, 3, 2S, 2S) minus ``bias`` (the padding is ``PAD - bias``); ``boxes``
    (K', 6) on the canvas with column 0 the mosaic's index, clipped to their tile (boxes left with
    no area are dropped); ``tile`` (K',) int64 the tile of each box; ``area`` (K',) each box's
    area in its source frame.
    """
    _, chans, size, _ = images.shape
    bsz = sources.shape[0]  # mosaics (the batch size in mosaic_batch)
    origins, tiles = tile_layout(size, centres)
    canvas = torch.full((bsz, chans, 2 * size, 2 * size), PAD - bias, dtype=images.dtype, device=images.device)
    for i, (src, org, rect) in enumerate(zip(sources.tolist(), origins.tolist(), tiles.tolist(), strict=True)):
        for j, (ox, oy), (x1, y1, x2, y2) in zip(src, org, rect, strict=True):
            piece = images[j, :, y1 - oy:y2 - oy, x1 - ox:x2 - ox]  # (3, h, w) the frame's part on the canvas
            if bias:
                torch.sub(piece, bias, out=canvas[i, :, y1:y2, x1:x2])
            else:
                canvas[i, :, y1:y2, x1:x2] = piece

    dev = targets.device
    pair, row = torch.nonzero(sources.to(dev).reshape(-1, 1) == targets[:, 0].long()[None], as_tuple=True)
    mosaic, tile = pair // TILES, pair % TILES  # (K',) rows sorted by mosaic, then tile
    box = targets[row, 2:]  # (K', 4)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    shift = origins.to(dev, box.dtype).reshape(-1, 2)[pair].repeat(1, 2)  # (K', 4)
    rect = tiles.to(dev, box.dtype).reshape(-1, 4)[pair]  # (K', 4)
    box = torch.minimum(torch.maximum(box + shift, rect[:, :2].repeat(1, 2)), rect[:, 2:].repeat(1, 2))
    keep = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    boxes = torch.cat([mosaic[:, None].to(box.dtype), targets[row, 1:2], box], 1)  # (K', 6)
    return canvas, boxes[keep], tile[keep], area[keep]


def warp_canvas(
    canvas_below_pad: Tensor, boxes: Tensor, area: Tensor, scale: Tensor, shift: Tensor,
    min_box_frac: float = MIN_VISIBLE,
) -> tuple[Tensor, Tensor]:
    """Map 2S x 2S canvases to S x S images: p -> ``scale * (p - S) + S/2 + shift`` (``random_perspective``).

    canvas_below_pad (B, 3, 2S, 2S) canvas minus ``PAD``; boxes (K, 6) on the canvas; area (K,)
    each box's source area; scale (B,); shift (B, 2) pixels. Returns images (B, 3, S, S) in
    [0, 1] (uncovered pixels padding grey) and the surviving boxes (K', 6), clipped to the image.
    """
    bsz, _, big, _ = canvas_below_pad.shape
    size = big // 2
    dev, dt = canvas_below_pad.device, canvas_below_pad.dtype
    # grid_sample reads output -> canvas in [-1, 1] units (align_corners=False). An output pixel
    # centre at normalised x (so q = S/2 + x S/2) reads the canvas point p = (q - S/2 - t) / s + S,
    # i.e. p / S - 1 = x / (2 s) - t / (s S). No rotation: x depends on the column only.
    pix = (2.0 * torch.arange(size, device=dev, dtype=dt) + 1.0) / size - 1.0  # (S,) pixel centres, rows = columns
    gx = (0.5 / scale)[:, None] * pix - (shift[:, 0] / (scale * size))[:, None]  # (B, S)
    gy = (0.5 / scale)[:, None] * pix - (shift[:, 1] / (scale * size))[:, None]  # (B, S)
    grid = torch.empty(bsz, size, size, 2, device=dev, dtype=dt)  # (B, S, S, 2)
    grid[..., 0] = gx[:, None, :]
    grid[..., 1] = gy[:, :, None]
    out = F.grid_sample(canvas_below_pad, grid, mode="bilinear", padding_mode="zeros", align_corners=False).add_(PAD)
    return out, _warp_boxes(boxes, area, scale.to(boxes.device, boxes.dtype), shift.to(boxes.device, boxes.dtype),
                            size, min_box_frac)


def _warp_boxes(boxes: Tensor, area: Tensor, scale: Tensor, shift: Tensor, size: int, min_box_frac: float) -> Tensor:
    """boxes (K, 6) on the canvas -> (K', 6) on the output; see ``warp_canvas``."""
    if boxes.numel() == 0:
        return boxes
    b = boxes[:, 0].long()
    s = scale[b, None]  # (K, 1)
    xy = s * (boxes[:, 2:] - size) + size / 2.0 + shift[b].repeat(1, 2)  # (K, 4)
    xy = xy.clamp(0.0, float(size))
    w, h = xy[:, 2] - xy[:, 0], xy[:, 3] - xy[:, 1]
    keep = (w >= MIN_SIDE) & (h >= MIN_SIDE) & (w * h >= min_box_frac * area * s[:, 0] ** 2)
    return torch.cat([boxes[:, :2], xy], 1)[keep]


def visible_tiles(size: int, tiles: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """(B, 4) bool: whether each tile (B, 4, 4) canvas ``[x1, y1, x2, y2]`` covers any output pixel area."""
    xy = scale[:, None, None] * (tiles.to(scale.dtype) - size) + size / 2.0 + shift.repeat(1, 2)[:, None, :]
    xy = xy.clamp(0.0, float(size))  # (B, 4, 4)
    return (xy[..., 2] > xy[..., 0]) & (xy[..., 3] > xy[..., 1])


def mosaic_batch(
    images: Tensor,
    targets: Tensor,
    views: Tensor,
    generator: torch.Generator | None = None,
    same_view: bool = True,
    scale: float = 0.5,
    translate: float = 0.1,
    min_box_frac: float = MIN_VISIBLE,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Replace every image of a batch by a 4-frame mosaic of the batch (see the module docstring).

    images (B, 3, S, S) float in [0, 1]; targets (K, 6) float ``[batch_index, class, x1, y1, x2, y2]``
    pixels; views (B,) int64. Returns images (B, 3, S, S), targets (K', 6), views (B,) (each
    mosaic keeps its anchor's view) and view_valid (B,) bool (whether that view label is true for
    the mosaic; always True with ``same_view``), all on the input's device.
    ``scale`` in [0, 1): zoom in ``[1 - scale, 1 + scale]``; ``translate``: shift up to ``translate * S``.
    """
    if not 0.0 <= scale < 1.0 or translate < 0.0:
        raise ValueError(f"mosaic needs 0 <= scale < 1 and translate >= 0, got scale={scale}, translate={translate}")
    bsz, size = images.shape[0], images.shape[-1]
    # draws on the CPU, in a fixed order: identical for a seed on any device
    u = torch.rand(bsz, DRAWS, generator=generator)  # (B, 8)
    views_cpu = views.cpu()
    sources = draw_partners(views_cpu, u[:, 0:3], same_view)  # (B, 4)
    centres = draw_centres(size, u[:, 3:5])  # (B, 2)
    zoom = 1.0 + scale * (2.0 * u[:, 5] - 1.0)  # (B,)
    shift = translate * size * (2.0 * u[:, 6:8] - 1.0)  # (B, 2) pixels

    canvas, boxes, _, area = mosaic_canvas(images, targets, sources, centres, bias=PAD)
    dev, dt = images.device, images.dtype
    out, boxes = warp_canvas(canvas, boxes, area, zoom.to(dev, dt), shift.to(dev, dt), min_box_frac)

    _, tiles = tile_layout(size, centres)
    seen = visible_tiles(size, tiles, zoom, shift)  # (B, 4)
    same = views_cpu[sources] == views_cpu[:, None]  # (B, 4)
    valid = (same | ~seen).all(1)
    return out, boxes, views, valid.to(views.device)
