"""From a PACS export to labels and back, privately (issue 40): a nested export read whole (DICOM by its
preamble whatever its name, a DICOMDIR's files, one closing count), no path for a file whose header was
read, one pseudonym key stated in every output and checked at load, burned-in text warned about and
blanked by ``--mask``. Real files written with pydicom; both commands run in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from study.data import main as data_main
from study.media.pseudonyms import Pseudonyms
from study.predict import main as predict_main
from tests.test_evaluate import tiny_checkpoint
from trainables.data.loader import load_dataset
from trainables.data.provenance import key_of

pydicom = pytest.importorskip("pydicom")
av = pytest.importorskip("av")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.fileset import FileSet  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, RLELossless  # noqa: E402

from tests.dicom_files import PATIENT, cli, dataset, save  # noqa: E402

DOE = {**PATIENT, "PatientName": "DOE^JOHN", "PatientID": "MRN-0042117"}
KEY_META = b"mtl_study.pseudonym_key_fingerprint"
RINGING = 8  # grey levels a lossy encoder may carry into a black band's edge from the image beside it


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A view-only model: no box is drawn, the frame's view is (at the top left, where the mask is)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), arch="cls_only", **{"balancer.name": "equal"})[0]


def loop(seed: int, n: int = 2, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)  # (N, H, W)


def report(identity: dict[str, str] | None = None) -> Dataset:
    """A Basic Text SR of a patient: a header, no pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.Modality = "SR"
    for key, value in (identity or DOE).items():
        setattr(ds, key, value)
    return ds


def jpgs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.jpg"))


# -- 1. the whole export ---------------------------------------------------------------------------------
def pacs_export(root: Path) -> dict[str, Dataset]:
    """Two loops at the top (one ``.dcm``, one without a suffix), ``patientB/`` with two (no suffix; one
    RLE), ``disc/``: a DICOMDIR with its PATIENT/STUDY/SERIES/IM files (pydicom's FileSet), and a
    viewer's README."""
    root.mkdir()
    (root / "patientB").mkdir()
    written = {"top.dcm": save(dataset(loop(0), "MONOCHROME2"), root / "top.dcm"),
               "IM0001": save(dataset(loop(1), "MONOCHROME2"), root / "IM0001"),
               "patientB/IM0001": save(dataset(loop(2), "MONOCHROME2"), root / "patientB" / "IM0001"),
               "patientB/IM0002": save(dataset(loop(3), "MONOCHROME2"), root / "patientB" / "IM0002", RLELossless)}
    fs = FileSet()
    for i in range(2):
        ds = dataset(loop(10 + i), "MONOCHROME2", StudyID="1", SeriesNumber=1, InstanceNumber=i + 1)
        fs.add(ds)
        written[f"disc/{i}"] = ds
    fs.write(root / "disc")
    (root / "disc" / "README.TXT").write_text("a viewer's readme, not DICOM")
    return written


def test_a_nested_export_is_read_whole_and_counted(checkpoint, tmp_path, capsys):
    src = tmp_path / "exports"
    written = pacs_export(src)
    assert len(list((src / "disc").rglob("IM*"))) == 2  # PT000000/ST00000k/SE000000/IM000000, no suffix
    code, out, err = cli(data_main, ["frames", src, "--out", tmp_path / "frames"], capsys)
    assert code == 0, err
    keys = Pseudonyms.load()
    clips = {p.name.split("-")[1] for p in jpgs(tmp_path / "frames")}
    assert clips == {keys.clip(ds.SOPInstanceUID) for ds in written.values()}  # every loop, none from DICOMDIR
    assert "wrote 12 frames of 6 clips" in out
    assert err.rstrip().splitlines()[-1] == ("files: read 6 (6 DICOM) and 1 DICOMDIR; skipped 1: 1 not DICOM "
                                             "(--list-skipped names them)")
    # the DICOMDIR as SOURCE: the files it lists
    code, out, err = cli(data_main, ["frames", src / "disc" / "DICOMDIR", "--out", tmp_path / "disc"], capsys)
    assert code == 0 and "wrote 4 frames of 2 clips" in out and "files: read 2 (2 DICOM) and 1 DICOMDIR" in err
    # predict: the same loops, plus images in a subfolder (their annotated copies keep the folder)
    (src / "stills").mkdir()
    Image.new("RGB", (40, 30), (90, 20, 20)).save(src / "stills" / "a.png")
    code, out, err = cli(predict_main, [checkpoint, src, "--out", tmp_path / "out", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "predict: 13 frames from 7 files" in err and "wrote 1 annotated image and 6 videos" in out
    assert (tmp_path / "out" / "stills" / "a.jpg").is_file()
    assert pq.read_table(tmp_path / "out" / "clips.parquet").num_rows == 6
    assert err.rstrip().splitlines()[-1].startswith("files: read 7 (6 DICOM, 1 image) and 1 DICOMDIR; skipped 1")
    # a folder holding nothing readable says where it looked
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    code, _, err = cli(data_main, ["frames", tmp_path / "empty", "--out", tmp_path / "e"], capsys)
    assert code == 2 and "in this folder or its subfolders (1 file looked at" in err and err.count("\n") == 1


# -- 2. no path once a header was read -------------------------------------------------------------------
def patient_folder(root: Path) -> dict[str, Path]:
    """``DOE^JOHN/`` as a PACS names a patient's folder: a good loop, a loop whose pixel data is cut short
    (its header reads), one cut after its first frame, a structured report, a header without pixel data, a
    file whose header is cut."""
    folder = root / "DOE^JOHN"
    folder.mkdir(parents=True)
    save(dataset(loop(0), "MONOCHROME2", identity=DOE), folder / "IM0001")
    save(dataset(loop(1, n=3), "MONOCHROME2", identity=DOE), folder / "IM0002")
    data = (folder / "IM0002").read_bytes()
    (folder / "IM0002").write_bytes(data[:-600])  # 3 x 256 pixel bytes: 168 left, not one frame
    save(dataset(loop(3, n=3), "MONOCHROME2", identity=DOE), folder / "IM0004")
    (folder / "IM0004").write_bytes((folder / "IM0004").read_bytes()[:-300])  # one frame of three, then cut
    report().save_as(folder / "SR0001", enforce_file_format=True)
    no_pixels = dataset(loop(2), "MONOCHROME2", identity=DOE)
    del no_pixels.PixelData
    save(no_pixels, folder / "PS0001")
    (folder / "IM0003").write_bytes(data[:140])  # the preamble and DICM, then nothing
    return {p.name: p for p in folder.iterdir()}


def sop(path: Path) -> str:
    return pydicom.dcmread(path, defer_size=64).SOPInstanceUID


def identifying(values: dict[str, str]) -> list[str]:
    return ["DOE^JOHN", "DOE", "JOHN", values["PatientID"], "MRN-0042117"]


def test_a_file_whose_header_was_read_is_named_by_its_pseudonym_only(checkpoint, tmp_path, capsys):
    files = patient_folder(tmp_path / "exports")
    keys = Pseudonyms.load()
    patient = keys.patient(DOE["PatientID"], DOE["IssuerOfPatientID"])
    runs = {"frames": (data_main, ["frames", tmp_path / "exports", "--out", tmp_path / "frames"]),
            "predict": (predict_main, [checkpoint, tmp_path / "exports", "--out", tmp_path / "out", "--device", "cpu"])}
    logs = []
    for name, (main, argv) in runs.items():
        code, out, err = cli(main, argv, capsys)
        assert code == 0, err
        logs.append(out + err)
        assert f"warning: {patient}-" in err and "cannot decode its pixel data" in err  # named, by its pseudonym
        notes = [line for line in err.splitlines() if line.startswith(f"note: {patient}-") and "; skipped" in line]
        assert len(notes) == 2 and "structured report" in err and "without pixel data" in err
        assert "skipped 4: 1 unreadable header, 1 no pixel data, 1 structured report, 1 undecodable" in err, name
        assert "files: read 2 (2 DICOM)" in err and f"{patient}-{keys.clip(sop(files['IM0004']))}: frames 0 to 0" in err
    assert len(jpgs(tmp_path / "frames")) == 2 + 1 and len(list((tmp_path / "out").glob("*.mp4"))) == 2
    outputs = [p for p in tmp_path.rglob("*") if p.is_file() and "exports" not in p.parts]
    assert {p.name for p in outputs} >= {"frames.json", "predictions.parquet", "clips.parquet"}
    cells = [str(v) for name in ("predictions", "clips") for row in
             pq.read_table(tmp_path / "out" / f"{name}.parquet").to_pylist() for v in row.values()]
    for value in identifying(DOE):
        assert not [log for log in logs if value in log], value
        assert not [c for c in cells if value in c], value
        assert not [p for p in outputs if value in p.name or value.encode() in p.read_bytes()], value
    # asked for (--list-skipped), a file without a readable header is named by its path below SOURCE
    code, _, err = cli(data_main, ["frames", tmp_path / "exports", "--out", tmp_path / "again", "--list-skipped"],
                       capsys)
    assert code == 0 and "  skipped (unreadable header): DOE^JOHN/IM0003" in err
    assert f"  skipped (undecodable): {patient}-{keys.clip(sop(files['IM0002']))}" in err
    # one such file as SOURCE: the error names it by its pseudonym too
    code, _, err = cli(data_main, ["frames", files["IM0002"], "--out", tmp_path / "one"], capsys)
    assert code == 2 and err.startswith(f"error: {patient}-") and "DOE" not in err and err.count("\n") == 1


# -- 3. one key, stated ----------------------------------------------------------------------------------
def write_key(path: Path, byte: str) -> Path:
    path.write_text(byte * 32 + "\n")
    path.chmod(0o600)
    return path


def yolo_dataset(root: Path, train: list[Path], val: list[Path]) -> Path:
    for split, frames in (("train", train), ("val", val)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for frame in frames:
            (root / split / "images" / frame.name).write_bytes(frame.read_bytes())
            (root / split / "labels" / f"{frame.stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n\n1\n")
    (root / "data.yaml").write_text("path: .\ntrain: train/images\nval: val/images\nnames: [jet]\n"
                                    "cls_names: [v0, v1]\n")
    return root / "data.yaml"


def test_every_output_names_its_key_and_a_data_set_of_two_keys_is_refused(checkpoint, tmp_path, capsys,
                                                                           monkeypatch):
    src = tmp_path / "echo"
    src.mkdir()
    save(dataset(loop(0), "MONOCHROME2"), src / "IM0001")
    save(dataset(loop(1), "MONOCHROME2", identity={**PATIENT, "PatientID": "PID-2"}), src / "IM0002")
    save(dataset(loop(2, n=1)[0], "MONOCHROME2", multiframe=False), src / "IM0003")
    a, b = write_key(tmp_path / "a.key", "a1"), write_key(tmp_path / "b.key", "b2")
    fa, fb = Pseudonyms.load(a).fingerprint, Pseudonyms.load(b).fingerprint
    code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / "A", "--key-file", a], capsys)
    assert code == 0 and f"key fingerprint {fa}" in err
    assert {key_of(p) for p in jpgs(tmp_path / "A")} == {fa}  # in every frame (a JPEG comment)
    assert f'"pseudonym_key_fingerprint": "{fa}"' in (tmp_path / "A" / "frames.json").read_text()
    # another key into the same folder: refused before anything is written
    before = sorted(p.name for p in (tmp_path / "A").iterdir())
    code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / "A", "--key-file", b], capsys)
    assert code == 2 and err.count("\n") == 1 and fa in err and fb in err and "one data set, one key" in err
    assert sorted(p.name for p in (tmp_path / "A").iterdir()) == before
    # predict: the Parquet files' metadata and the annotated copies of DICOMs
    code, _, err = cli(predict_main, [checkpoint, src, "--out", tmp_path / "P", "--key-file", a, "--device", "cpu"],
                       capsys)
    assert code == 0, err
    for table in ("predictions", "clips"):
        assert pq.read_schema(tmp_path / "P" / f"{table}.parquet").metadata[KEY_META] == fa.encode()
    assert [key_of(p) for p in jpgs(tmp_path / "P")] == [fa]  # the single-frame DICOM's copy
    for mp4 in sorted((tmp_path / "P").glob("*.mp4")):
        with av.open(str(mp4)) as container:
            assert container.metadata.get("comment") == f"mtl-study pseudonym key {fa}"
    # loading: frames of one key pass and say so; frames of two are one error line
    code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / "B", "--key-file", b], capsys)
    assert code == 0
    one = yolo_dataset(tmp_path / "ds1", jpgs(tmp_path / "A")[:3], jpgs(tmp_path / "A")[3:])
    code, out, err = cli(data_main, ["check", one], capsys)
    assert code == 0 and f"pseudonym key {fa} (5 frames)" in out, err
    mixed = yolo_dataset(tmp_path / "ds2", jpgs(tmp_path / "A"), jpgs(tmp_path / "B"))
    code, out, err = cli(data_main, ["check", mixed], capsys)  # check prints its problems as `file: what — fix`
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"{mixed}: ") and fa in err and fb in err
    assert "2 pseudonym keys" in err and "both sides of the patient split" in err
    code, _, err = cli(lambda argv: load_dataset(mixed, 64) and 0, [], capsys)  # as a study loads it
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "2 pseudonym keys" in err
    # the key: made loudly on first use, shown and made on purpose by `study.data key`
    monkeypatch.setenv("MTL_STUDY_CONFIG", str(tmp_path / "fresh"))
    code, _, err = cli(data_main, ["key"], capsys)
    assert code == 2 and "no DICOM pseudonym key" in err and "key --create" in err
    code, out, err = cli(data_main, ["key", "--create"], capsys)
    made = Pseudonyms.load().fingerprint
    assert code == 0 and "warning: created the DICOM pseudonym key" in err and f"fingerprint {made}" in err
    assert "made now" in out and f"fingerprint {made}" in out
    code, out, err = cli(data_main, ["key"], capsys)
    assert code == 0 and "(exists;" in out and not err
    # a lost key made anew, exporting next to the frames of the old one: refused, and said why
    code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / "A"], capsys)
    assert code == 2 and "error: --out" in err and fa in err and made in err


# -- 4. burned-in text -----------------------------------------------------------------------------------
def with_text(n: int, size: int = 64) -> np.ndarray:
    """(n, size, size, 3) frames: black, white "DOE^JOHN 2024-03-11" in the top quarter, a grey square lower."""
    frames = []
    for _ in range(n):
        im = Image.new("RGB", (size, size))
        draw = ImageDraw.Draw(im)
        draw.text((1, 1), "DOE^JOHN", fill=(255, 255, 255))
        draw.rectangle((0, 10, size - 1, 13), fill=(255, 255, 255))  # a full-width rule: text on every column
        draw.rectangle((20, 36, 44, 56), fill=(128, 128, 128))
        frames.append(np.asarray(im))
    return np.stack(frames)


def test_burned_in_text_is_warned_about_and_masked_in_every_output(checkpoint, tmp_path, capsys):
    src = tmp_path / "echo"
    src.mkdir()
    save(dataset(with_text(3), "RGB", BurnedInAnnotation="YES"), src / "IM0001")  # a loop that says so
    save(dataset(with_text(2), "RGB"), src / "IM0002")  # ultrasound that does not say
    save(dataset(with_text(1)[0], "RGB", multiframe=False, BurnedInAnnotation="NO"), src / "IM0003")
    band = slice(0, 16)  # --mask 0,0,1,0.25 of a 64-px frame: rows 0-15, 16-px aligned
    code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / "plain"], capsys)
    assert code == 0 and err.count("BurnedInAnnotation YES") == 1 and "blank it with --mask" in err
    assert "warning: 1 ultrasound DICOM does not state BurnedInAnnotation" in err
    assert all(np.asarray(Image.open(p))[band].max() > 200 for p in jpgs(tmp_path / "plain"))  # the text is there
    code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / "masked", "--mask", "0,0,1,0.25"], capsys)
    assert code == 0 and "--mask 0,0,1,0.25 blanks part of every frame" in err
    assert "and the pixels (--mask 0,0,1,0.25 blanked)" in err  # the audit line says so
    frames = [np.asarray(Image.open(p)) for p in jpgs(tmp_path / "masked")]
    assert len(frames) == 6 and all(f[band].max() == 0 for f in frames)
    assert all(f[40:52, 24:40].min() > 100 for f in frames)  # the rest of the image is left alone
    code, out, err = cli(predict_main, [checkpoint, src, "--out", tmp_path / "out", "--device", "cpu",
                                        "--mask", "0,0,64,16"], capsys)  # the same band, in pixels
    assert code == 0 and "wrote 1 annotated image and 2 videos" in out, err
    # The band is black before encoding; JPEG's and H.264's half-resolution colour carries a few levels of
    # the view label drawn just below it into the band's last row (ringing), never the text (255 before)
    annotated = [np.asarray(Image.open(p)) for p in jpgs(tmp_path / "out")]
    assert len(annotated) == 1 and annotated[0][band].max() <= RINGING and annotated[0][:15].max() == 0
    assert annotated[0][16:40].max() > 200  # the view label is drawn below the band, and is there
    for mp4 in sorted((tmp_path / "out").glob("*.mp4")):
        with av.open(str(mp4)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(decoded) in (2, 3) and all(f[band].max() <= RINGING for f in decoded)
        assert all(f[50:55, 24:40].min() > 100 for f in decoded)  # the image is there (below the two labels)
    # a mask that is not one: one line
    code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / "x", "--mask", "0,0,1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--mask 0,0,1: give four numbers" in err
