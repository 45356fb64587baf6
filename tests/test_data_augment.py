"""Augmentation keeps boxes on their objects; HSV conversions match colorsys; the batch iterator's contract."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from trainables.config import DataConfig
from trainables.data.augment import PAD, affine, augment_batch, hsv_jitter, hsv_to_rgb, rgb_to_hsv
from trainables.data.loader import iterate_batches
from trainables.data.synthetic import synthetic_data

S = 64


def white_rectangles(boxes: list[tuple[int, int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One black (B, 3, S, S) image per box with that box painted white; targets (B, 6)."""
    images = torch.zeros(len(boxes), 3, S, S)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        images[i, :, y1:y2, x1:x2] = 1.0
    targets = torch.tensor([[i, 0, *b] for i, b in enumerate(boxes)], dtype=torch.float32)
    return images, targets


def white_extent(image: torch.Tensor) -> tuple[int, int, int, int]:
    ys, xs = torch.nonzero(image.min(0).values > 0.6, as_tuple=True)  # above the 0.45 padding grey
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_random_scale_translate_hsv_keep_the_box_on_the_white_rectangle():
    boxes = [(10, 12, 40, 30), (20, 20, 44, 50), (5, 30, 25, 60), (28, 4, 60, 22)] * 4
    images, targets = white_rectangles(boxes)
    cfg = DataConfig(scale=0.4, translate=0.1)
    out, new = augment_batch(images, targets, cfg, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and new.shape[1] == 6
    for row in new:
        i = int(row[0])
        extent = torch.tensor(white_extent(out[i]), dtype=torch.float32)
        assert torch.allclose(row[2:], extent, atol=1.5), (i, row, extent)


def test_identity_affine_changes_nothing():
    images, targets = white_rectangles([(10, 12, 40, 30)])
    out, new = affine(images, targets, torch.ones(1), torch.zeros(1, 2), torch.zeros(1, dtype=torch.bool))
    torch.testing.assert_close(out, images)
    torch.testing.assert_close(new, targets)


def test_flip_mirrors_box_and_pixels():
    images, targets = white_rectangles([(10, 12, 40, 30)])
    out, new = affine(images, targets, torch.ones(1), torch.zeros(1, 2), torch.ones(1, dtype=torch.bool))
    torch.testing.assert_close(new[0, 2:], torch.tensor([S - 40.0, 12, S - 10, 30]))
    torch.testing.assert_close(out, images.flip(-1))


def test_scale_and_shift_by_hand_and_padding_is_grey():
    images, targets = white_rectangles([(16, 16, 48, 48)])
    out, new = affine(images, targets, torch.tensor([0.5]), torch.tensor([[8.0, -4.0]]),
                      torch.zeros(1, dtype=torch.bool))
    # 0.5 * (16 - 32) + 32 + 8 = 32 ; 0.5 * (48 - 32) + 32 + 8 = 48 ; y: 24 - 4 = 20, 40 - 4 = 36
    torch.testing.assert_close(new[0, 2:], torch.tensor([32.0, 20, 48, 36]))
    assert white_extent(out[0]) == (32, 20, 48, 36)
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), PAD))  # uncovered corner


def test_boxes_pushed_out_or_made_tiny_are_dropped_and_clipped_otherwise():
    images, targets = white_rectangles([(0, 0, 10, 10), (50, 50, 64, 64), (30, 30, 31, 40)])
    _, new = affine(images, targets, torch.ones(3), torch.tensor([[-20.0, 0], [-10.0, 0], [0, 0]]),
                    torch.zeros(3, dtype=torch.bool))
    # box 0 leaves the image; box 1 moves left to 40..54 and stays; box 2 is 1 px wide, too thin to keep
    assert new[:, 0].tolist() == [1.0]
    torch.testing.assert_close(new[0, 2:], torch.tensor([40.0, 50, 54, 64]))
    _, clipped = affine(images[:1], targets[:1], torch.ones(1), torch.tensor([[-5.0, 0]]),
                        torch.zeros(1, dtype=torch.bool))
    torch.testing.assert_close(clipped[0, 2:], torch.tensor([0.0, 0, 5, 10]))


def test_rgb_hsv_matches_colorsys_and_round_trips():
    rgb = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    rgb[0, :, 0, 0] = 0.5  # grey: hue 0, saturation 0
    hsv = rgb_to_hsv(rgb)
    for b, y, x in [(0, 0, 0), (0, 2, 3), (1, 4, 6), (1, 1, 1)]:
        expected = colorsys.rgb_to_hsv(*rgb[b, :, y, x].tolist())
        assert hsv[b, :, y, x].tolist() == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(hsv_to_rgb(hsv), rgb, atol=1e-5, rtol=0)


def test_hue_shift_of_a_third_turns_red_into_green():
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    out = hsv_jitter(red, torch.tensor([[1 / 3, 1.0, 0.5]]))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0, 0.5, 0.0]), atol=1e-5, rtol=0)


def test_same_generator_seed_same_augmentation_and_flip_off_by_default():
    images, targets = white_rectangles([(10, 12, 40, 30)] * 8)
    cfg = DataConfig()
    assert cfg.fliplr == 0.0
    a = augment_batch(images, targets, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(images, targets, cfg, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_iterate_batches_contract():
    data = synthetic_data(10, 5, 0, 32, seed=0)
    batches = list(iterate_batches(data, "train", 4))
    assert [len(b[3]) for b in batches] == [4, 4, 2]
    images, targets, views, idx = batches[0]
    assert images.dtype == torch.float32 and images.shape == (4, 3, 32, 32) and 0 <= images.min() <= images.max() <= 1
    torch.testing.assert_close(images, torch.from_numpy(data.images[idx]).float() / 255)
    assert views.dtype == torch.int64 and views.tolist() == data.views[idx].tolist()
    torch.testing.assert_close(targets, torch.from_numpy(data.boxes_of(idx)))
    assert np.concatenate([b[3] for b in batches]).tolist() == data.splits["train"].tolist()

    def order(seed: int) -> list[np.ndarray]:
        gen = torch.Generator().manual_seed(seed)
        return [b[3] for b in iterate_batches(data, "train", 4, shuffle=True, generator=gen)]

    shuffled, again = order(0), order(0)
    assert [s.tolist() for s in shuffled] == [s.tolist() for s in again]
    assert sorted(np.concatenate(shuffled).tolist()) == data.splits["train"].tolist()
    assert [len(b[3]) for b in iterate_batches(data, "val", 2, drop_last=True)] == [2, 2]


def test_iterate_batches_augments_only_when_asked():
    data = synthetic_data(8, 0, 0, 32, seed=0)
    plain = next(iterate_batches(data, "train", 8, augment=DataConfig(augment=False)))[0]
    torch.testing.assert_close(plain, torch.from_numpy(data.images[:8]).float() / 255)
    augmented = next(iterate_batches(data, "train", 8, generator=torch.Generator().manual_seed(0),
                                     augment=DataConfig()))[0]
    assert augmented.shape == plain.shape and not torch.equal(augmented, plain)
