"""True pixels from every kind of DICOM an echo archive holds, read by ``study.media.frames_io.read_frames``
(the reader of ``study.predict`` and ``study.data frames``) and checked against hand-computed values.

Kinds: 8- and 16-bit PALETTE COLOR, 8- and 16-bit MONOCHROME2 (with and without a window), MONOCHROME1,
signed data with a rescale, single-frame and multi-frame, RLE (pydicom's own encoder) and JPEG 2000
(encoded and decoded by the ``[dicom]`` extra's pylibjpeg-openjpeg; skipped without it). RGB and
YBR_FULL_422 JPEG Baseline loops are checked in tests/test_predict_dicom.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.uid import JPEG2000Lossless, RLELossless  # noqa: E402

from study.media.frames_io import read_frames  # noqa: E402
from tests.dicom_files import dataset, palette, save  # noqa: E402


def frames_of(path: Path) -> np.ndarray:
    """(N, H, W, 3) uint8: every frame as the tools read it."""
    return np.stack([np.asarray(f.image) for f in read_frames(path)])


def grey(values: list[list[int]]) -> np.ndarray:
    """(N, W) grey levels as (N, 1, W, 3) RGB frames (one row each)."""
    return np.repeat(np.array(values, np.uint8)[:, None, :, None], 3, axis=3)


@pytest.mark.parametrize("packed", [False, True], ids=["16-bit-words", "packed-bytes"])
def test_an_8_bit_palette_loop_equals_its_table_applied_by_hand(tmp_path, packed):
    """8 bits per entry: the table's values are the 8-bit output, whether stored in 16-bit words or bytes
    (read as 16-bit entries, index 128 came out as 128 / 257 = 0: the image nearly black)."""
    index = np.arange(256)
    red, green, blue = index, 255 - index, (index * 7) % 256  # (256,) each
    indices = np.array([[[0, 128, 255], [1, 2, 3]], [[255, 128, 0], [200, 100, 50]]], np.uint8)  # (2, 2, 3)
    path = tmp_path / "palette8.dcm"
    save(palette(indices, red, green, blue, entry_bits=8, packed=packed), path)
    got = frames_of(path)
    assert np.array_equal(got, np.stack([red[indices], green[indices], blue[indices]], axis=-1))
    assert got[0, 0].tolist() == [[0, 255, 0], [128, 127, 128], [255, 0, 249]]  # 128 * 7 % 256 = 128


def test_a_16_bit_palette_loop_is_its_table_scaled_to_8_bits(tmp_path):
    """12-bit indices into 4096 entries of 16 bits: v -> floor(v * 255 / 65535 + 0.5)."""
    index = np.arange(4096)
    red, green, blue = index * 16, 65535 - index * 16, np.full(4096, 32768)
    indices = np.array([[[0, 2048, 4095]], [[4095, 0, 2048]]], np.uint16)  # (2, 1, 3)
    path = tmp_path / "palette16.dcm"
    save(palette(indices, red, green, blue, entry_bits=16, bits_stored=12), path)
    got = frames_of(path)
    # 2048 -> 32768 * 255 / 65535 = 127.502 -> 128 (red, blue); 65535 - 32768 = 32767 -> 127.498 -> 127 (green)
    # 4095 -> 65520 -> 254.94 -> 255; 0 -> 65535 -> 255 (green)
    assert got[0, 0].tolist() == [[0, 255, 128], [128, 127, 128], [255, 0, 128]]
    assert got[1, 0].tolist() == [[255, 0, 128], [0, 255, 128], [128, 127, 128]]


def test_8_bit_monochrome2_and_monochrome1_loops(tmp_path):
    stored = np.array([[[0, 100, 255]], [[255, 7, 0]]], np.uint8)  # (2, 1, 3)
    save(dataset(stored, "MONOCHROME2"), tmp_path / "m2.dcm")
    save(dataset(stored, "MONOCHROME1"), tmp_path / "m1.dcm")
    assert np.array_equal(frames_of(tmp_path / "m2.dcm"), grey([[0, 100, 255], [255, 7, 0]]))
    assert np.array_equal(frames_of(tmp_path / "m1.dcm"), grey([[255, 155, 0], [0, 248, 255]]))  # 0 is white


def test_a_12_bit_loop_is_scaled_by_its_stored_depth_not_by_each_frame(tmp_path):
    """0, 2048, 4095 of 12 bits -> 0, 2048 * 255 / 4095 + 0.5 = 128.0, 255 -- in a frame whose own maximum
    is 2048 as well (a per-frame stretch would make it 255)."""
    stored = np.array([[[0, 2048, 4095]], [[0, 1024, 2048]]], np.uint16)
    save(dataset(stored, "MONOCHROME2", bits_stored=12), tmp_path / "m12.dcm")
    assert np.array_equal(frames_of(tmp_path / "m12.dcm"), grey([[0, 128, 255], [0, 64, 128]]))  # 63.77 -> 64


def test_a_window_in_the_header_is_the_loops_one_window(tmp_path):
    """Window centre 2048, width 1024 (LINEAR, PS3.3 C.11.2.1.2) on 12 bits, output 0..4095 then to 8 bits:
    x <= 1536 -> 0; x > 2559 -> 255; 1792 -> ((1792 - 2047.5) / 1023 + 0.5) * 4095 = 1024.75 -> 63.81 -> 64;
    2304 -> (256.5 / 1023 + 0.5) * 4095 = 3074.25 -> 191.43 -> 191."""
    stored = np.array([[[1000, 1792, 2304, 3000]], [[1792, 1792, 4000, 0]]], np.uint16)
    save(dataset(stored, "MONOCHROME2", bits_stored=12, WindowCenter=2048, WindowWidth=1024), tmp_path / "w.dcm")
    assert np.array_equal(frames_of(tmp_path / "w.dcm"), grey([[0, 64, 191, 255], [64, 64, 255, 0]]))


def test_a_signed_loop_with_a_rescale_maps_one_stored_value_to_one_grey_in_every_frame(tmp_path):
    """12 stored bits, signed, slope 2, intercept -100, no window: the modality range is -2048 * 2 - 100 ..
    2047 * 2 - 100, so stored s -> (s + 2048) * 255 / 4095: -2048 -> 0, 0 -> 127.53 -> 128,
    1000 -> 189.80 -> 190, 2047 -> 255. The frames have different minima and maxima."""
    stored = np.array([[[-2048, 0, 1000, 2047]], [[0, 1000, 1000, 0]], [[1000, 1000, 0, 0]]], np.int16)
    ds = dataset(stored, "MONOCHROME2", bits_stored=12, signed=True, RescaleSlope=2, RescaleIntercept=-100)
    save(ds, tmp_path / "signed.dcm")
    save(ds, tmp_path / "signed-rle.dcm", RLELossless)  # RLE: pydicom encodes and decodes it itself
    for name in ("signed.dcm", "signed-rle.dcm"):
        got = frames_of(tmp_path / name)
        assert np.array_equal(got, grey([[0, 128, 190, 255], [128, 190, 190, 128], [190, 190, 128, 128]]))
        for value, level in ((0, 128), (1000, 190)):
            assert {int(g) for g in got[..., 0][stored == value]} == {level}


def test_an_rle_palette_loop_and_a_single_frame_file(tmp_path):
    index = np.arange(256)
    indices = np.array([[[3, 4], [5, 6]], [[6, 5], [4, 3]]], np.uint8)
    save(palette(indices, index, index // 2, 255 - index, entry_bits=8), tmp_path / "rle.dcm", RLELossless)
    got = frames_of(tmp_path / "rle.dcm")
    assert np.array_equal(got, np.stack([indices, indices // 2, 255 - indices], axis=-1))
    one = np.array([[10, 20, 30], [40, 50, 60]], np.uint8)  # (H, W): Ultrasound Image Storage, no NumberOfFrames
    save(dataset(one, "MONOCHROME2", multiframe=False), tmp_path / "one.dcm")
    frames = list(read_frames(tmp_path / "one.dcm"))
    assert len(frames) == 1 and not frames[0].is_video
    assert np.array_equal(np.asarray(frames[0].image), np.repeat(one[..., None], 3, axis=2))


def test_jpeg_2000_through_the_dicom_extra(tmp_path):
    """A syntax only the ``[dicom]`` extra decodes (CI installs it): encoded here by the same plugin."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.pixels.encoders.base import get_encoder

    if not (get_encoder(JPEG2000Lossless).is_available and get_decoder(JPEG2000Lossless).is_available):
        pytest.skip('no JPEG 2000 encoder/decoder here: pip install -e ".[dicom]"')
    row = np.array([[0, 2048, 4095, 1], [4095, 0, 2048, 1]], np.uint16)  # (2, 4): a row of each frame
    stored = np.tile(row[:, None, :], (1, 32, 8))  # (2, 32, 32): openjpeg needs more than a few pixels
    save(dataset(stored, "MONOCHROME2", bits_stored=12), tmp_path / "j2k.dcm", JPEG2000Lossless)
    assert pydicom.dcmread(tmp_path / "j2k.dcm").file_meta.TransferSyntaxUID == JPEG2000Lossless
    expect = np.tile(grey([[0, 128, 255, 0], [255, 0, 128, 0]]), (1, 32, 8, 1))  # 1 -> 0.06 -> 0
    assert np.array_equal(frames_of(tmp_path / "j2k.dcm"), expect)
