"""Mosaic keeps every box inside its tile and the view label true; geometry checked by hand."""

from __future__ import annotations

import math

import torch

from trainables.data.augment import PAD
from trainables.data.mosaic import draw_partners, mosaic_batch, mosaic_canvas, tile_layout, warp_canvas

S = 64


def flat_images(values: list[float], size: int = S) -> torch.Tensor:
    """(B, 3, size, size) images, image j painted the constant values[j]."""
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, size, size).contiguous()


def white_rectangles(boxes: list[tuple[int, int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One black (B, 3, S, S) image per box with that box painted white; targets (B, 6), class = index."""
    images = torch.zeros(len(boxes), 3, S, S)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        images[i, :, y1:y2, x1:x2] = 1.0
    targets = torch.tensor([[i, i, *b] for i, b in enumerate(boxes)], dtype=torch.float32)
    return images, targets


def interior_values(image: torch.Tensor) -> set[float]:
    """Values of the pixels of channel 0 whose 3x3 neighbourhood is constant (no bilinear seam blends)."""
    x = image[0]
    inner = x[1:-1, 1:-1]
    flat = torch.ones_like(inner, dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat &= (x[1 + dy:x.shape[0] - 1 + dy, 1 + dx:x.shape[1] - 1 + dx] - inner).abs() < 1e-5
    return {round(float(v), 4) for v in inner[flat].unique()}


def test_tile_layout_by_hand_matches_load_mosaic():
    # S = 8, centre (6, 10): the top-left frame ends at the centre, so it starts at (-2, 2) and its
    # tile is cut by the canvas edge at x = 0; the right frames start at x = 6 and end at 14 < 16
    origins, tiles = tile_layout(8, torch.tensor([[6, 10]]))
    assert origins[0].tolist() == [[-2, 2], [6, 2], [-2, 10], [6, 10]]
    assert tiles[0].tolist() == [[0, 2, 6, 10], [6, 2, 14, 10], [0, 10, 6, 16], [6, 10, 14, 16]]


def test_canvas_pixels_and_boxes_by_hand():
    images = flat_images([0.1, 0.2, 0.3, 0.4], size=8)
    # frame 0, tile 0: shift (-2, 2) -> (-1, 3, 3, 7) -> clipped at x = 0;
    # frame 3, tile 3: shift (6, 10) -> (6, 10, 8, 12)
    targets = torch.tensor([[0, 5, 1, 1, 5, 5], [3, 6, 0, 0, 2, 2]], dtype=torch.float32)
    sources = torch.tensor([[0, 1, 2, 3]])
    canvas, boxes, tile, area = mosaic_canvas(images, targets, sources, torch.tensor([[6, 10]]))
    assert canvas.shape == (1, 3, 16, 16)
    assert torch.all(canvas[0, :, 2:10, 0:6] == 0.1) and torch.all(canvas[0, :, 2:10, 6:14] == 0.2)
    assert torch.all(canvas[0, :, 10:16, 0:6] == 0.3) and torch.all(canvas[0, :, 10:16, 6:14] == 0.4)
    assert torch.all(canvas[0, :, 0:2] == PAD) and torch.all(canvas[0, :, :, 14:] == PAD)
    assert boxes.tolist() == [[0, 5, 0, 3, 3, 7], [0, 6, 6, 10, 8, 12]]
    assert tile.tolist() == [0, 3] and area.tolist() == [16.0, 4.0]


def test_every_canvas_box_lies_inside_its_tile():
    gen = torch.Generator().manual_seed(0)
    xy = torch.randint(0, S - 8, (40, 2), generator=gen).float()
    wh = torch.randint(2, 30, (40, 2), generator=gen).float()
    targets = torch.cat([torch.randint(0, 6, (40, 1), generator=gen).float(), torch.zeros(40, 1),
                         xy, (xy + wh).clamp_max(S)], 1)
    sources = torch.randint(0, 6, (6, 4), generator=gen)
    centres = torch.randint(S // 2, 3 * S // 2, (6, 2), generator=gen)
    _, boxes, tile, _ = mosaic_canvas(torch.rand(6, 3, S, S, generator=gen), targets, sources, centres)
    _, tiles = tile_layout(S, centres)
    rect = tiles[boxes[:, 0].long(), tile].float()  # (K', 4)
    assert len(boxes) > 40  # frames are reused across mosaics
    assert torch.all(boxes[:, 2:4] >= rect[:, :2]) and torch.all(boxes[:, 4:6] <= rect[:, 2:])
    assert torch.all(boxes[:, 4:6] > boxes[:, 2:4])


def test_box_inside_a_tile_keeps_its_size_times_the_scale():
    # centre (40, 24): frame 0 starts at (-24, -40); its box (30, 45, 50, 60) lands on (6, 5, 26, 20),
    # fully inside tile 0 = [0, 0, 40, 24]. Scale 0.5, no shift: p -> 0.5 (p - 64) + 32 = p / 2.
    images, targets = white_rectangles([(30, 45, 50, 60)])
    images = torch.cat([images, torch.zeros_like(images)])  # frame 1: no boxes, fills the other tiles
    sources, centres = torch.tensor([[0, 1, 1, 1]]), torch.tensor([[40, 24]])
    canvas, boxes, _, area = mosaic_canvas(images, targets, sources, centres, bias=PAD)
    assert boxes.tolist() == [[0, 0, 6, 5, 26, 20]]
    out, final = warp_canvas(canvas, boxes, area, torch.tensor([0.5]), torch.zeros(1, 2))
    torch.testing.assert_close(final, torch.tensor([[0, 0, 3, 2.5, 13, 10]]))
    assert out.shape == (1, 3, S, S)
    white = out[0, 0] > 0.99  # fully white pixels: those whose canvas neighbourhood is all box
    ys, xs = torch.nonzero(white, as_tuple=True)
    assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == (3, 3, 13, 10)
    # scale 1, shift (-10, 5): p -> p - 32 + (-10, 5); the box (6, 5, 26, 20) -> (-36, -22, ...) leaves
    _, gone = warp_canvas(canvas, boxes, area, torch.ones(1), torch.tensor([[-10.0, 5.0]]))
    assert gone.shape == (0, 6)


def test_identity_warp_is_the_centre_window():
    gen = torch.Generator().manual_seed(1)
    canvas = torch.rand(2, 3, 2 * S, 2 * S, generator=gen)
    out, _ = warp_canvas(canvas - PAD, torch.zeros(0, 6), torch.zeros(0), torch.ones(2), torch.zeros(2, 2))
    torch.testing.assert_close(out, canvas[:, :, S // 2:3 * S // 2, S // 2:3 * S // 2], atol=1e-5, rtol=0)


def test_mosaic_boxes_stay_in_the_image_and_on_their_objects():
    boxes = [(10, 12, 40, 30), (20, 20, 44, 50), (5, 30, 25, 60), (28, 4, 60, 22)] * 4
    images, targets = white_rectangles(boxes)
    views = torch.zeros(len(boxes), dtype=torch.long)
    out, new, _, _ = mosaic_batch(images, targets, views, torch.Generator().manual_seed(0), scale=0.3)
    assert out.shape == images.shape and new.shape[1] == 6 and len(new) > 0
    assert torch.all(new[:, 2:] >= 0) and torch.all(new[:, 2:] <= S)
    assert torch.all(new[:, 4] - new[:, 2] >= 2) and torch.all(new[:, 5] - new[:, 3] >= 2)
    for row in new:
        i, (x1, y1, x2, y2) = int(row[0]), row[2:].tolist()
        # the inside of the box is white: pixels whose centre is 1.5 px or more in from the edges
        # (bilinear sampling blends over one canvas pixel, at most 1.3 output pixels here)
        inside = out[i, :, math.ceil(y1 + 1):math.floor(y2 - 1), math.ceil(x1 + 1):math.floor(x2 - 1)]
        assert inside.numel() == 0 or inside.min() > 0.99, (i, row)


def test_same_view_mosaics_hold_only_frames_of_the_view():
    views = torch.tensor([0, 1, 0, 1, 2, 0, 1, 0, 1, 0, 1, 0])  # view 2: one frame, its own partner
    n = len(views)
    colour = [(j + 1) / (n + 2) for j in range(n)]  # frame j painted colour[j]; padding grey is 0.447
    images = flat_images(colour)
    lookup = {round(c, 4): j for j, c in enumerate(colour)}
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        out, _, out_views, valid = mosaic_batch(images, torch.zeros(0, 6), views, gen)
        assert out_views.tolist() == views.tolist() and valid.all()
        for i in range(n):
            frames = {lookup[v] for v in interior_values(out[i]) if v in lookup}
            assert frames and {int(views[j]) for j in frames} == {int(views[i])}, (i, frames)
            if i == 4:
                assert frames == {4}


def test_mixed_view_mosaics_flag_the_view_as_invalid():
    views = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    n = len(views)
    colour = [(j + 1) / (n + 2) for j in range(n)]
    lookup = {round(c, 4): j for j, c in enumerate(colour)}
    gen = torch.Generator().manual_seed(0)
    out, _, _, valid = mosaic_batch(flat_images(colour), torch.zeros(0, 6), views, gen, same_view=False)
    mixed = 0
    for i in range(n):
        frames = {lookup[v] for v in interior_values(out[i]) if v in lookup}
        if {int(views[j]) for j in frames} != {int(views[i])}:
            mixed += 1
            assert not valid[i], (i, frames)
    assert mixed > 0


def test_draw_partners_by_hand():
    views = torch.tensor([0, 0, 1, 2, 1])
    u = torch.tensor([[0.0, 0.5, 0.99]] * 5)
    partners = draw_partners(views, u, same_view=True)
    # 0 has candidate {1}; 2 has {4}; 3 has none (itself); 4 has {2}
    assert partners.tolist() == [[0, 1, 1, 1], [1, 0, 0, 0], [2, 4, 4, 4], [3, 3, 3, 3], [4, 2, 2, 2]]
    anyview = draw_partners(views, u, same_view=False)
    # candidates of 0 are [1, 2, 3, 4]: u = 0, 0.5, 0.99 -> the 0th, 2nd and 3rd
    assert anyview[0].tolist() == [0, 1, 3, 4]
    assert draw_partners(torch.tensor([1]), u[:1], same_view=False).tolist() == [[0, 0, 0, 0]]


def test_same_seed_same_mosaic_and_empty_targets_work():
    images, targets = white_rectangles([(10, 12, 40, 30), (20, 20, 44, 50), (5, 30, 25, 60)] * 2)
    views = torch.tensor([0, 1, 0, 1, 0, 1])
    a = mosaic_batch(images, targets, views, torch.Generator().manual_seed(3))
    b = mosaic_batch(images, targets, views, torch.Generator().manual_seed(3))
    c = mosaic_batch(images, targets, views, torch.Generator().manual_seed(4))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    out, empty, _, valid = mosaic_batch(images, torch.zeros(0, 6), views, torch.Generator().manual_seed(3))
    assert empty.shape == (0, 6) and out.shape == images.shape and valid.shape == (6,)
    torch.testing.assert_close(out, a[0])  # boxes do not change the pixels
