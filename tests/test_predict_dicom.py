"""DICOM in: cine loops written here with pydicom (uncompressed RGB; JPEG Baseline YBR_FULL_422 encoded
by Pillow and encapsulated) through ``study.predict`` and ``study.data frames``, and bad DICOMs.
(tests/test_dicom_pixels.py: the pixels of every other kind; tests/test_dicom_privacy.py: what is written.)"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from study.cli import run_cli
from study.data import main as data_main
from study.media.frames_io import CLIP_SCHEMA, SCHEMA, read_frames
from study.media.pseudonyms import Pseudonyms
from study.predict import main as predict_main
from tests.test_evaluate import tiny_checkpoint
from trainables.data.clips import clip_ids

av = pytest.importorskip("av")
pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from tests.dicom_files import PATIENT, dataset, identifying_values, jpeg_baseline, save  # noqa: E402

JPEG_TOLERANCE = 12  # per channel, inside flat colour blocks: JPEG at quality 95 with 4:2:2 chroma


def colour_frames(n: int, width: int = 128, height: int = 96) -> np.ndarray:
    """(n, H, W, 3) uint8 frames of flat, saturated colour blocks (4 x 3 blocks of 32 px) that move by
    one block per frame: a YBR->RGB conversion applied twice, or none, shifts them by far more than JPEG."""
    palette = np.array([[220, 40, 40], [40, 200, 60], [30, 60, 230], [240, 220, 30], [200, 40, 200],
                        [30, 210, 220], [250, 250, 250], [20, 20, 20]], np.uint8)
    rows, cols = height // 32, width // 32
    out = np.zeros((n, height, width, 3), np.uint8)
    for f in range(n):
        for r in range(rows):
            for c in range(cols):
                out[f, r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = palette[(r * cols + c + f) % len(palette)]
    return out


def block_interiors(frame: np.ndarray) -> np.ndarray:
    """The 16 x 16 centres of the 32-px blocks (away from edges, where chroma subsampling blurs), stacked."""
    h, w = frame.shape[:2]
    return np.stack([frame[r + 8:r + 24, c + 8:c + 24] for r in range(0, h, 32) for c in range(0, w, 32)])


def write_dicom(path: Path, frames: np.ndarray, jpeg: bool, **attrs: Any) -> Dataset:
    """A multi-frame ultrasound DICOM of RGB ``frames`` (n, H, W, 3): uncompressed RGB, or JPEG Baseline
    YBR_FULL_422 (tests/dicom_files.py). ``attrs``: FrameTime, identity fields, ..."""
    return save(jpeg_baseline(frames, **attrs) if jpeg else dataset(frames, "RGB", **attrs), path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A view-only model: no box is drawn over the colours the MP4 test compares (its rows are one per frame)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), arch="cls_only", **{"balancer.name": "equal"})[0]


@pytest.fixture
def echo_folder(tmp_path) -> tuple[Path, dict[str, tuple[Dataset, np.ndarray]]]:
    """rgb.dcm (5 frames, FrameTime 50 ms: 20 fps), loop (4 frames, JPEG YBR_FULL_422, no suffix, CineRate
    15), a text file named bad.dcm, a DICOM without pixel data (a report) and a DICOMDIR."""
    folder = tmp_path / "echo"
    folder.mkdir()
    rgb, jpg = colour_frames(5), colour_frames(4)[:, :, ::-1]  # mirrored: the two clips differ
    written = {"rgb.dcm": (write_dicom(folder / "rgb.dcm", rgb, jpeg=False, FrameTime="50"), rgb),
               "loop": (write_dicom(folder / "loop", np.ascontiguousarray(jpg), jpeg=True, CineRate=15), jpg)}
    (folder / "bad.dcm").write_text("not a DICOM, whatever the name says\n")
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    report.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.SOPClassUID, report.SOPInstanceUID = report.file_meta.MediaStorageSOPClassUID, generate_uid()
    report.save_as(folder / "report.dcm", enforce_file_format=True)
    index = Dataset()  # a DICOMDIR, as a PACS export's index: no suffix, found by its DICM magic
    index.file_meta = FileMetaDataset()
    index.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    index.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    index.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    index.DirectoryRecordSequence = []
    index.save_as(folder / "DICOMDIR", enforce_file_format=True)
    return folder, written


def cli(main, argv: list[Any], capsys) -> tuple[int, str, str]:
    code = run_cli(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def no_identifying_field_in(folder: Path, datasets: list[Dataset]) -> None:
    """No file under ``folder`` holds, as bytes, any identifying value of ``datasets`` (the full check of
    every output, Parquet cells and logs included, is tests/test_dicom_privacy.py)."""
    values = {v for ds in datasets for v in identifying_values(ds)}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in values:
                assert value.encode() not in data and value not in path.name, f"{value} written to {path}"


def test_the_frame_reader_gives_rgb_within_jpeg_error_once_converted(echo_folder):
    folder, written = echo_folder
    rgb = [np.asarray(f.image) for f in read_frames(folder / "rgb.dcm")]
    assert np.array_equal(np.stack(rgb), written["rgb.dcm"][1])  # uncompressed: exact
    frames = list(read_frames(folder / "loop"))
    assert [f.index for f in frames] == [0, 1, 2, 3] and all(f.is_video for f in frames)
    assert frames[0].dicom.sop_uid == written["loop"][0].SOPInstanceUID
    for frame, source in zip(frames, written["loop"][1], strict=True):
        error = np.abs(block_interiors(np.asarray(frame.image)).astype(int) - block_interiors(source))
        assert error.max() <= JPEG_TOLERANCE  # a second YBR->RGB conversion moves these colours by > 50


def test_a_folder_of_dicoms_goes_through_predict(checkpoint, echo_folder, tmp_path, capsys):
    folder, written = echo_folder
    out = tmp_path / "out"
    code, stdout, err = cli(predict_main, [checkpoint, folder, "--out", out, "--device", "cpu"], capsys)
    assert code == 0, err
    # bad.dcm has no header: counted, not named (its path may name a patient); the report by its pseudonym
    assert "bad.dcm" not in err and "report.dcm" not in err and "note:" in err and "structured report" in err
    assert "files: read 2 (2 DICOM) and 1 DICOMDIR; skipped 2: 1 not DICOM, 1 structured report" in err
    assert "predict: 9 frames from 2 files" in err and "wrote 0 annotated images and 2 videos" in stdout
    assert err.count("dicom: used PatientID") == 1  # the audit line
    table = pq.read_table(out / "predictions.parquet")
    assert table.schema.equals(SCHEMA)
    df = table.to_pandas()  # a view-only model: one box-less row per frame
    keys = Pseudonyms.load()
    names = {}
    for name, (ds, frames) in written.items():  # named by keyed pseudonyms: <patient>-<clip>, 2.25. UIDs
        patient = keys.patient(PATIENT["PatientID"], PATIENT["IssuerOfPatientID"])
        names[name] = f"{patient}-{keys.clip(ds.SOPInstanceUID)}"
        rows = df[df["source"] == names[name]]
        assert rows["frame"].tolist() == list(range(len(frames))) and (rows["patient"] == patient).all()
        assert (rows["study_uid"] == keys.uid(ds.StudyInstanceUID)).all()
        assert (rows["series_uid"] == keys.uid(ds.SeriesInstanceUID)).all()
        assert (rows["sop_uid"] == keys.uid(ds.SOPInstanceUID)).all()
    clips = pq.read_table(out / "clips.parquet")
    assert clips.schema.equals(CLIP_SCHEMA)
    clips_df = clips.to_pandas().set_index("source")
    assert len(clips_df) == 2 and clips_df["frames"].to_dict() == {names["loop"]: 4, names["rgb.dcm"]: 5}
    for name in written:  # the clip's view: the argmax of its frames' mean probability
        rows = df[df["source"] == names[name]]
        assert clips_df.loc[names[name], "view"] in set(rows["view"]) | {None}
        assert 1 / 3 <= clips_df.loc[names[name], "view_prob"] <= rows["view_prob"].max() + 1e-9
    for stem, frames, rate in ((names["rgb.dcm"], written["rgb.dcm"][1], 20), (names["loop"], written["loop"][1], 15)):
        with av.open(str(out / f"{stem}.mp4")) as container:
            assert Fraction(container.streams.video[0].average_rate) == rate  # from FrameTime / CineRate
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(decoded) == len(frames)  # the header's frame count
        for got, source in zip(decoded, frames, strict=True):  # the text sits in the top rows: compare below
            error = np.abs(block_interiors(got[32:]).astype(int) - block_interiors(source[32:]))
            assert np.median(error) <= JPEG_TOLERANCE  # DICOM JPEG, then the MP4's own yuv420 compression
    no_identifying_field_in(out, [ds for ds, _ in written.values()])


@pytest.mark.parametrize("case", ["text", "report", "dicomdir", "no-decoder"])
def test_a_single_bad_dicom_is_one_line_and_exit_2(checkpoint, echo_folder, tmp_path, capsys, case):
    folder, _ = echo_folder
    source, expect = folder / "bad.dcm", "not a DICOM file"
    if case == "report":
        source, expect = folder / "report.dcm", "a structured report (no pixel data)"
    elif case == "dicomdir":
        source, expect = folder / "DICOMDIR", "a DICOMDIR that lists no file that is here"
    elif case == "no-decoder":  # JPEG-LS needs the [dicom] extra here (no pylibjpeg in the test environment)
        pytest.importorskip("pydicom.pixels.decoders.base")
        from pydicom.pixels.decoders.base import get_decoder
        from pydicom.uid import JPEGLSLossless

        if get_decoder(JPEGLSLossless).is_available:
            pytest.skip("a JPEG-LS decoder is installed here")
        ds = pydicom.dcmread(folder / "loop")
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        source, expect = tmp_path / "jls.dcm", 'pip install -e ".[dicom]"'
        ds.save_as(source, enforce_file_format=True)
    code, _, err = cli(predict_main, [checkpoint, source, "--out", tmp_path / "out", "--device", "cpu"], capsys)
    assert code == 2 and expect in err and err.count("\n") == 1 and err.startswith("error: ")


def test_frames_writes_every_frame_named_for_the_patient_split(echo_folder, tmp_path, capsys):
    folder, written = echo_folder
    code, stdout, err = cli(data_main, ["frames", folder, "--out", tmp_path / "frames"], capsys)
    assert code == 0 and "wrote 9 frames of 2 clips" in stdout and "1 not DICOM" in err and "bad.dcm" not in err
    names = sorted(p.name for p in (tmp_path / "frames").glob("*.jpg"))
    assert len(names) == 9
    patient = Pseudonyms.load().patient(PATIENT["PatientID"], PATIENT["IssuerOfPatientID"])  # keyed, not the ID
    assert all(n.startswith(f"{patient}-") for n in names) and len(set(clip_ids(names))) == 2  # one patient
    for ds, frames in written.values():
        clip = Pseudonyms.load().clip(ds.SOPInstanceUID)
        mine = [n for n in names if n.startswith(f"{patient}-{clip}-")]
        assert [int(n.rsplit("-", 1)[1].removesuffix(".jpg")) for n in mine] == list(range(len(frames)))
    no_identifying_field_in(tmp_path / "frames", [ds for ds, _ in written.values()])
    code, stdout, _ = cli(data_main, ["frames", folder / "rgb.dcm", "--out", tmp_path / "every2", "--every", "2",
                                      "--patient", "p-1"], capsys)
    assert code == 0 and sorted(p.name for p in (tmp_path / "every2").glob("*.jpg"))[0].startswith("p_1-")
    assert len(list((tmp_path / "every2").glob("*.jpg"))) == 3  # frames 0, 2, 4
    (folder / "clip.mp4").write_bytes(b"")  # a video names no patient
    code, _, err = cli(data_main, ["frames", folder, "--out", tmp_path / "v"], capsys)
    assert code == 2 and "--patient" in err and err.count("\n") == 1
    code, _, err = cli(data_main, ["frames", folder / "bad.dcm", "--out", tmp_path / "b"], capsys)
    assert code == 2 and "not a DICOM file" in err and err.count("\n") == 1
