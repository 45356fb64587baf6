"""The fused, chunked HSV jitter equals the plain HSV round trip; the padding offset folded into it changes nothing."""

from __future__ import annotations

import pytest
import torch

from trainables.config import DataConfig
from trainables.data import augment
from trainables.data.augment import augment_batch, hsv_jitter, hsv_to_rgb, rgb_to_hsv


def reference_jitter(images: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """The jitter as the module's docstring states it, through a materialised HSV image."""
    hsv = rgb_to_hsv(images)
    h = (hsv[:, 0] + gains[:, 0, None, None]) % 1.0
    s = (hsv[:, 1] * gains[:, 1, None, None]).clamp(0.0, 1.0)
    v = (hsv[:, 2] * gains[:, 2, None, None]).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.stack([h, s, v], 1))


def awkward_images(batch: int, size: int, seed: int) -> torch.Tensor:
    """Random colours plus the corner cases of the hue formula: grey, black, white, ties, pure primaries."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, size, size), generator=g).float() / 255  # (B, 3, S, S)
    images[0, :, 0, :] = 0.5  # grey row
    images[0, :, 1, :] = 0.0  # black
    images[0, :, 2, :] = 1.0  # white
    images[1, :, 0, 0] = torch.tensor([1.0, 1.0, 0.0])  # red = green, largest
    images[1, :, 0, 1] = torch.tensor([0.0, 1.0, 1.0])  # green = blue, largest
    images[1, :, 0, 2] = torch.tensor([1.0, 0.0, 1.0])  # red = blue, largest
    images[1, :, 0, 3] = torch.tensor([0.0, 0.0, 1.0])  # pure blue
    images[1, :, 0, 4] = torch.tensor([0.2, 0.9, 0.4])  # green largest
    return images


@pytest.mark.parametrize("hue_range", [0.015, 0.5, 1.7])
def test_fused_jitter_equals_the_hsv_round_trip(hue_range):
    images = awkward_images(6, 12, seed=0)
    g = torch.Generator().manual_seed(1)
    sym = 2.0 * torch.rand(6, 3, generator=g) - 1.0  # (B, 3) in [-1, 1)
    # saturation/value gains up to 1.9 so that both clamps bite
    gains = torch.stack([hue_range * sym[:, 0], 1.0 + 0.9 * sym[:, 1], 1.0 + 0.9 * sym[:, 2]], 1)
    gains[0] = torch.tensor([-0.25, 1.9, 1.9])
    torch.testing.assert_close(hsv_jitter(images, gains), reference_jitter(images, gains), atol=1e-5, rtol=0)


def test_chunks_with_a_remainder_give_the_same_images(monkeypatch):
    images = awkward_images(5, 8, seed=2)
    gains = torch.tensor([[0.1, 1.3, 0.7], [-0.2, 0.5, 1.2], [0.0, 1.0, 1.0], [0.45, 0.0, 1.5], [-0.5, 2.0, 0.2]])
    whole = hsv_jitter(images, gains)
    # chunks of 2, 2 and 1 images (the chunk is per thread)
    monkeypatch.setattr(augment, "CPU_CHUNK_PIXELS", -(-2 * 8 * 8 // torch.get_num_threads()))
    torch.testing.assert_close(hsv_jitter(images, gains), whole, atol=0, rtol=0)
    torch.testing.assert_close(whole, reference_jitter(images, gains), atol=1e-5, rtol=0)


def test_jitter_leaves_its_input_alone():
    images = awkward_images(2, 8, seed=3)
    before = images.clone()
    hsv_jitter(images, torch.tensor([[0.3, 1.5, 0.5], [-0.1, 0.2, 1.4]]))
    assert torch.equal(images, before)


def test_near_identity_jitter_before_the_warp_matches_no_jitter():
    """HSV on with gains of ~1 (its output handed to the warp minus the padding grey) gives the
    same images and boxes as HSV off, for the same draws."""
    images = awkward_images(4, 32, seed=4)
    targets = torch.tensor([[0, 0, 4.0, 4, 20, 24], [2, 1, 10, 8, 30, 30]])
    on = DataConfig(hsv_h=0.0, hsv_s=0.0, hsv_v=1e-9, scale=0.4, translate=0.2, fliplr=0.5)
    off = DataConfig(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, scale=0.4, translate=0.2, fliplr=0.5)
    a = augment_batch(images, targets, on, torch.Generator().manual_seed(7))
    b = augment_batch(images, targets, off, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a[0], b[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(a[1], b[1])
    assert not torch.equal(b[0], images)  # the warp did act
