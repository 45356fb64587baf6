"""What leaves the tools for a DICOM: keyed pseudonyms (study/media/pseudonyms.py, study/media/deid.py),
never a patient's name, ID, dates or an original UID -- checked by reading every output of
``study.predict`` and ``study.data frames`` (files, file names, Parquet cells, stdout and stderr)."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from study.data import main as data_main
from study.media.pseudonyms import Pseudonyms
from study.predict import main as predict_main
from tests.test_evaluate import tiny_checkpoint

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("av")

from tests.dicom_files import PATIENT, cli, dataset, identifying_values, jpeg_baseline, palette, save  # noqa: E402

OTHER = {**PATIENT, "PatientName": "Marchbanks^Euphemia", "PatientID": "PID-5502288"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), arch="cls_only", **{"balancer.name": "equal"})[0]


def grey_loop(seed: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16), dtype=np.uint8)  # (N, H, W)


def other_key(path: Path) -> Path:
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o600)
    return path


def test_the_key_is_made_once_with_mode_0600_and_pseudonyms_are_hmac_sha256(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTL_STUDY_CONFIG", str(tmp_path / "settings"))
    keys = Pseudonyms.load()
    path = tmp_path / "settings" / "dicom-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "created the DICOM pseudonym key" in capsys.readouterr().err
    key = bytes.fromhex(path.read_text())
    assert len(key) == 32 and Pseudonyms.load().fingerprint == keys.fingerprint  # read again, not made again
    assert "created" not in capsys.readouterr().err and key.hex() not in repr(keys)
    reference = hmac.new(key, b"patient\x00StElsewhere\x00PID-1", hashlib.sha256).hexdigest()[:16]
    assert keys.patient("PID-1", "StElsewhere") == reference
    assert len({keys.patient("PID-1", "StElsewhere"), keys.patient("PID-1", "Other"), keys.patient("PID-2")}) == 3
    uid = keys.uid("1.2.840.113619.2.391.4417.20240311.1")
    value, digest = int(uid.removeprefix("2.25.")), hmac.new(key, b"uid\x001.2.840.113619.2.391.4417.20240311.1",
                                                             hashlib.sha256).digest()[:16]
    version_and_variant = (0xF << 76) | (0x3 << 62)  # RFC 4122: bits 76-79 hold 4, bits 62-63 hold 0b10
    assert (value >> 76) & 0xF == 4 and (value >> 62) & 0x3 == 0b10 and value < 2**128
    assert value & ~version_and_variant == int.from_bytes(digest, "big") & ~version_and_variant
    assert uid.startswith("2.25.") and pydicom.uid.UID(uid).is_valid and len(uid) <= 44
    shared = Pseudonyms.load(other_key(tmp_path / "shared-key"))
    assert shared.patient("PID-1") != keys.patient("PID-1") and shared.uid("1.2") != keys.uid("1.2")


@pytest.mark.parametrize("case", ["missing", "not-a-key", "readable-by-others"])
def test_a_key_file_that_cannot_serve(tmp_path, capsys, case):
    save(dataset(grey_loop(0), "MONOCHROME2"), tmp_path / "a.dcm")
    key = tmp_path / "key"
    if case == "not-a-key":
        key.write_text("secret\n")
    elif case == "readable-by-others":
        other_key(key).chmod(0o644)
    code, _, err = cli(data_main, ["frames", tmp_path / "a.dcm", "--out", tmp_path / "f", "--key-file", key], capsys)
    if case == "readable-by-others":
        assert code == 0 and "warning:" in err and "chmod 600" in err
    else:
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
        assert ("no such file" if case == "missing" else "not a DICOM pseudonym key") in err


def patients(folder: Path) -> dict[str, str]:
    """{clip: patient} of the frame names ``<patient>-<clip>-<frame>.jpg`` in ``folder``."""
    return {n.split("-")[1]: n.split("-")[0] for n in (p.name for p in folder.glob("*.jpg"))}


def test_two_studies_of_one_patient_are_one_patient_and_another_key_renames_them(tmp_path, capsys):
    """a, b: two studies (a follow-up) of one PatientID; c: another patient; d: the same ID from another
    issuer; e: no PatientID (named by its study, with a warning)."""
    src = tmp_path / "echo"
    src.mkdir()
    no_id = {k: v for k, v in PATIENT.items() if k not in ("PatientID", "IssuerOfPatientID")}
    identities = {"a": PATIENT, "b": PATIENT, "c": OTHER, "d": {**PATIENT, "IssuerOfPatientID": "Elsewhere"},
                  "e": no_id}
    written = {name: save(dataset(grey_loop(i), "MONOCHROME2", identity=who), src / f"{name}.dcm")
               for i, (name, who) in enumerate(identities.items())}
    assert written["a"].StudyInstanceUID != written["b"].StudyInstanceUID
    runs = {}
    for run, extra in (("own", []), ("shared", ["--key-file", other_key(tmp_path / "key")])):
        code, _, err = cli(data_main, ["frames", src, "--out", tmp_path / run, *extra], capsys)
        assert code == 0 and err.count("no PatientID") == 1 and "will not group" in err
        keys = Pseudonyms.load(*([tmp_path / "key"] if extra else []))
        by_clip = patients(tmp_path / run)
        runs[run] = {name: by_clip[keys.clip(ds.SOPInstanceUID)] for name, ds in written.items()}
        assert runs[run]["a"] == runs[run]["b"] == keys.patient("PID-7731946", "StElsewhere")
        assert len({runs[run][n] for n in "acde"}) == 4
    assert not set(runs["own"].values()) & set(runs["shared"].values())  # another key, other pseudonyms


def test_nothing_identifying_reaches_any_output_of_predict_or_frames(checkpoint, tmp_path, capsys):
    """A folder as a PACS exports it -- a loop named by its SOP Instance UID, a JPEG loop, a single-frame
    palette image, a loop without PatientID -- through both commands; then every output file (its bytes
    and its name), every Parquet cell and every line printed is searched for the patients' names, IDs,
    dates and the files' original UIDs."""
    src = tmp_path / "export"
    src.mkdir()
    rgb = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)  # (N, H, W, 3)
    index = np.arange(256)
    by_uid = dataset(rgb, "RGB")  # states no frame rate: its note must name it by its pseudonym
    datasets = [
        save(by_uid, src / by_uid.SOPInstanceUID),
        save(jpeg_baseline(rgb, FrameTime="40"), src / "IM0002"),
        save(palette(grey_loop(2, 1)[0], index, index, 255 - index, entry_bits=8, multiframe=False), src / "IM3.dcm"),
        save(dataset(grey_loop(3), "MONOCHROME2", identity={**OTHER, "PatientID": ""}, CineRate=20), src / "IM4"),
    ]
    values = {v for ds in datasets for v in identifying_values(ds)} | {v for v in OTHER.values() if v}
    logs = []
    for main, argv in ((predict_main, [checkpoint, src, "--out", tmp_path / "out", "--device", "cpu"]),
                       (data_main, ["frames", src, "--out", tmp_path / "frames"])):
        code, out, err = cli(main, argv, capsys)
        assert code == 0 and "dicom: used PatientID" in err and err.count("no PatientID") == 1, err
        logs.append(out + err)
    assert "states no frame rate" in logs[0]  # a note about a file, naming it by its pseudonym
    cells = [str(v) for name in ("predictions", "clips") for column in
             pq.read_table(tmp_path / "out" / f"{name}.parquet").to_pylist() for v in column.values()]
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] + list((tmp_path / "frames").iterdir())
    assert len(files) == 4 + 2 + 3 + 3 + 1 + 2 + 1  # 4 annotated copies, 2 tables; each file's frames, frames.json
    for value in values:
        assert not [log for log in logs if value in log], value
        assert not [c for c in cells if value in c], value
        assert not [p for p in files if value in p.name or value.encode() in p.read_bytes()], value
    # the search has teeth: asked for the originals, it finds them
    code, _, err = cli(predict_main, [checkpoint, src, "--out", tmp_path / "kept", "--device", "cpu", "--keep-uids"],
                       capsys)
    kept = pq.read_table(tmp_path / "kept" / "predictions.parquet").column("sop_uid").to_pylist()
    assert code == 0 and "this output identifies studies" in err and by_uid.SOPInstanceUID in kept


def test_a_videos_file_name_does_not_reach_its_frame_names(tmp_path, capsys):
    """A video carries no header, but its name may carry a patient's name and a date: the clip part is a
    keyed hash of it (the patient part is --patient)."""
    from tests.test_predict import synthetic_frames, write_video

    video = tmp_path / "Quennell_Ottilie_20240311.mp4"
    write_video(video, synthetic_frames(2, 32, 32))
    code, _, err = cli(data_main, ["frames", video, "--out", tmp_path / "f", "--patient", "p1"], capsys)
    names = sorted(p.name for p in (tmp_path / "f").glob("*.jpg"))
    assert code == 0 and names == [f"p1-{Pseudonyms.load().clip(video.name)}-{i:04d}.jpg" for i in range(2)]
    assert "dicom:" not in err  # no DICOM read, no audit line
