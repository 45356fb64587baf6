"""A corpus of malformed datasets, one per problem, each with its one-line message and exit status.

Most run ``study.data.main`` in-process; two run ``python -m study.data check`` in a subprocess
to prove the real command exits with the right status and prints no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from study.data import main

GOOD_LABEL = "1 0.2 0.2 0.6 0.2 0.6 0.7 0.2 0.7\n\n0 1 0"
YAML = "path: .\ntrain: train/images\nval: val/images\nnames: [a, b]\ncls_names: [v0, v1, v2]\n"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "cache"))


def write_image(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)


def make_dataset(root: Path, files: dict[str, dict[str, str | None]] | None = None, yaml: str = YAML,
                 images: bool = True) -> Path:
    """``files``: split -> stem -> label text (None: no label file). Every stem gets a .jpg image."""
    files = files if files is not None else {"train": {"p1-a": GOOD_LABEL, "p2-b": GOOD_LABEL},
                                             "val": {"p3-c": GOOD_LABEL}}
    for split, stems in files.items():
        for stem, label in stems.items():
            if images:
                write_image(root / split / "images" / f"{stem}.jpg")
            if label is not None:
                (root / split / "labels").mkdir(parents=True, exist_ok=True)
                (root / split / "labels" / f"{stem}.txt").write_text(label)
    (root / "data.yaml").write_text(yaml)
    return root / "data.yaml"


def check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def with_train_label(tmp_path: Path, label: str) -> Path:
    return make_dataset(tmp_path / "ds", {"train": {"p1-a": label, "p2-b": GOOD_LABEL}, "val": {"p3-c": GOOD_LABEL}})


def test_a_clean_dataset_passes_with_a_summary(tmp_path, capsys):
    code, out, err = check(capsys, make_dataset(tmp_path / "ds"))
    assert code == 0, err
    assert "train  2       2       0          0  2  |  0   2   0" in out
    assert "val    1       1       0          0  1  |  0   1   0" in out
    assert "no group is in more than one split folder" in out


@pytest.mark.parametrize(
    ("label", "line", "message"),
    [
        ("0 0.5 0.5 0.2\n0 1 0", 1, "4 numbers on a line"),
        ("0 0.5 x 0.2 0.2\n0 1 0", 1, "'x' (column 3) is not a finite number"),
        ("2 0.5 0.5 0.2 0.2\n0 1 0", 1, "class id 2 is not an integer in [0, 1]"),
        ("0 1 0\n0 0.5 0.5 0.2 1.5", 2, "coordinate -0.25 is outside [0, 1]"),
        ("0 0.5 0.5 0.2 0\n0 1 0", 1, "box width 0.2 / height 0 is not positive"),
        ("0 0.2 0.3 0.4 0.3 0.6 0.3\n0 1 0", 1, "zero-area box (its points span no width or no height)"),
        ("0 0.5 0.5 0.2 0.2\n0 0 0", 2, "one-hot view line '0 0 0' has 0 ones"),
        ("0 0.5 0.5 0.2 0.2\n1 0 1", 2, "one-hot view line '1 0 1' has 2 ones"),
        ("0 1 0\n1", 2, "a second view line (the first is line 1)"),
        ("3", 1, "view index 3 is not an integer in [0, 2]"),
    ],
)
def test_a_bad_label_line_is_fatal_with_its_file_and_line(tmp_path, capsys, label, line, message):
    code, out, err = check(capsys, with_train_label(tmp_path, label))
    assert code == 2 and out == ""
    label_file = tmp_path / "ds" / "train" / "labels" / "p1-a.txt"
    assert err.splitlines() == [err.splitlines()[0]]  # exactly one line
    assert err.startswith(f"{label_file}:{line}: {message} — ")


def test_ambiguous_file_is_refused(tmp_path, capsys):
    yaml = YAML.replace("cls_names: [v0, v1, v2]", "cls_names: [v0, v1, v2, v3, v4]")
    root = make_dataset(tmp_path / "ds", {"train": {"p1-a": "0 1 1 0 0\n2", "p2-b": "1"}, "val": {"p3-c": "1"}},
                        yaml=yaml)
    code, _, err = check(capsys, root)
    assert code == 2 and "ambiguous line '0 1 1 0 0'" in err


def test_not_utf8_label_is_fatal(tmp_path, capsys):
    root = with_train_label(tmp_path, "")
    (tmp_path / "ds" / "train" / "labels" / "p1-a.txt").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = check(capsys, root)
    assert code == 2 and "p1-a.txt: not a UTF-8 text file — save the label file as plain text" in err


def test_missing_view_is_skipped_by_default_and_fatal_on_request(tmp_path, capsys):
    root = with_train_label(tmp_path, "0 0.5 0.5 0.2 0.2")
    code, out, _ = check(capsys, root)
    assert code == 0
    assert "skipped 1 file:" in out
    assert "p1-a.txt: no view line (the image class is missing) — add one line" in out
    assert "(the image is skipped until then)" in out
    assert "train  1 " in out  # one image left in train

    code, out, err = check(capsys, root, "--missing-view", "error")
    assert code == 2 and out == ""
    assert err.strip().endswith("or leave such images out with missing_view=skip (--missing-view skip)")
    assert "p1-a.txt: no view line" in err


def test_image_without_label_follows_the_missing_view_policy(tmp_path, capsys):
    root = with_train_label(tmp_path, "")
    (tmp_path / "ds" / "train" / "labels" / "p1-a.txt").unlink()
    code, out, _ = check(capsys, root)
    assert code == 0 and f"{tmp_path / 'ds/train/images/p1-a.jpg'}: image without a label file" in out
    code, _, err = check(capsys, root, "--missing-view", "error")
    assert code == 2 and "p1-a.jpg: image without a label file (expected " in err


def test_a_split_emptied_by_skipped_files_is_fatal(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", {"train": {"p1-a": GOOD_LABEL}, "val": {"p3-c": "0 0.5 0.5 0.2 0.2"}})
    code, _, err = check(capsys, root)
    assert code == 2
    assert err.splitlines()[0].startswith(f"{tmp_path / 'ds/val/labels/p3-c.txt'}: no view line")
    assert err.splitlines()[1] == (
        f"{root}:3: split 'val' has no usable images left — fix the skipped files listed above"
    )


def test_label_without_image_is_listed_and_skipped(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "labels" / "p9-z.txt").write_text(GOOD_LABEL)
    code, out, _ = check(capsys, root)
    assert code == 0
    assert f"{tmp_path / 'ds/train/labels/p9-z.txt'}: label file without an image — add its image" in out


def test_corrupt_image_is_skipped_and_listed(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "images" / "p1-a.jpg").write_bytes(b"not a jpeg at all")
    code, out, _ = check(capsys, root)
    assert code == 0
    assert f"{tmp_path / 'ds/train/images/p1-a.jpg'}: cannot decode the image (" in out
    assert "train  1 " in out


def test_truncated_image_is_skipped(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    image = tmp_path / "ds" / "train" / "images" / "p2-b.jpg"
    image.write_bytes(image.read_bytes()[:200])
    code, out, _ = check(capsys, root)
    assert code == 0 and "p2-b.jpg: cannot decode the image" in out


def test_a_split_whose_images_are_all_corrupt_is_fatal(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "val" / "images" / "p3-c.jpg").write_bytes(b"broken")
    code, _, err = check(capsys, root)
    assert code == 2
    assert "p3-c.jpg: cannot decode the image" in err
    assert f"{root}: split 'val' has no decodable images" in err


@pytest.mark.parametrize(
    ("yaml", "line", "message"),
    [
        ("path: .\ntrain: train/images\nnames: [a, b]\ncls_names: [v0, v1, v2]\n", 0, "missing key 'val'"),
        ("path: .\ntrain: train/images\nval: val/images\ncls_names: [v0, v1, v2]\n", 0, "missing key 'names'"),
        ("path: .\ntrain: train/images\nval: val/images\nnames: [a, b]\n", 0, "missing key 'cls_names'"),
        (YAML + "nc: 3\n", 6, "nc is 3 but names lists 2 classes"),
        (YAML.replace("[v0, v1, v2]", "[v0]"), 5, "'cls_names' lists 1 name; at least 2 are needed"),
        (YAML.replace("val: val/images", "val: nowhere/images"), 3, "val folder"),
        (YAML.replace("path: .", "path: ../missing"), 1, "dataset folder"),
        (YAML.replace("names: [a, b]", "names: {0: a, 2: b}"), 4, "'names' keys are [0, 2], not 0..1"),
        ("train: [unclosed\n", 2, "not valid YAML"),
        ("- just\n- a list\n", 0, "data.yaml is not a mapping"),
    ],
)
def test_data_yaml_problems_are_fatal_with_the_yaml_line(tmp_path, capsys, yaml, line, message):
    root = make_dataset(tmp_path / "ds", yaml=yaml)
    code, _, err = check(capsys, root)
    assert code == 2
    where = f"{root}:{line}: " if line else f"{root}: "
    assert any(e.startswith(where + message) for e in err.splitlines()), err


def test_missing_data_yaml(tmp_path, capsys):
    code, _, err = check(capsys, tmp_path / "nope.yaml")
    assert code == 2
    assert err.startswith(f"{tmp_path / 'nope.yaml'}: cannot read the data.yaml (No such file or directory)")


def test_empty_image_folder_and_images_outside_an_images_folder(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    for f in (tmp_path / "ds" / "val" / "images").iterdir():
        f.unlink()
    code, _, err = check(capsys, root)
    assert code == 2 and f"{tmp_path / 'ds/val/images'}: val folder holds no images" in err

    flat = make_dataset(tmp_path / "flat", yaml=YAML.replace("train/images", "train/pics"))
    write_image(tmp_path / "flat" / "train" / "pics" / "p1-a.jpg")
    code, _, err = check(capsys, flat)
    assert code == 2 and "1 image outside an 'images' folder: their label files cannot be found" in err


def test_two_images_sharing_a_label_file(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    Image.new("RGB", (8, 8)).save(tmp_path / "ds" / "train" / "images" / "p1-a.png")
    code, _, err = check(capsys, root)
    assert code == 2 and "p1-a.png: shares the label file p1-a.txt with p1-a.jpg" in err


def test_every_problem_of_a_dataset_is_listed_at_once(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", {"train": {"p1-a": "9 0.5 0.5 0.1 0.1\n1", "p2-b": "0 0 0"},
                                          "val": {"p3-c": GOOD_LABEL}})
    code, _, err = check(capsys, root)
    assert code == 2 and len(err.splitlines()) == 2


def test_group_leak_between_split_folders_is_reported(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", {"train": {"p1-a": GOOD_LABEL, "p2-b": GOOD_LABEL},
                                          "val": {"p1-c": GOOD_LABEL, "p3-d": GOOD_LABEL}})
    code, out, _ = check(capsys, root)
    assert code == 0
    assert "WARNING: split leak: 1 of 3 groups have images in more than one split folder (train&val 1)" in out
    assert "use --split-by patient" in out


def test_bad_config_values_are_one_line(tmp_path, capsys):
    code, _, err = check(capsys, make_dataset(tmp_path / "ds"), "--imgsz", "100")
    assert code == 2 and err.strip() == "config: data.imgsz=100 must be a multiple of 32"


def test_synthetic_check(capsys):
    code, out, _ = check(capsys, "synthetic")
    assert code == 0 and "train  512" in out and "no group is in more than one split folder" in out


def _run_cli(*args: str, env_cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MTL_STUDY_CACHE": str(env_cache)}
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "study.data", "check", *args], capture_output=True, text=True,
                          cwd=root, env=env, timeout=300)


def test_cli_process_exit_status_good_and_bad(tmp_path):
    good = make_dataset(tmp_path / "good")
    result = _run_cli(str(good), env_cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "train  2 " in result.stdout and result.stderr == ""
    assert list((tmp_path / "cache").iterdir())  # the decoded cache went where MTL_STUDY_CACHE says

    bad = with_train_label(tmp_path, "0 0.5 0.5 0.2 0.2\n0 1 1")
    result = _run_cli(str(bad), "--missing-view", "error", env_cache=tmp_path / "cache")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (f"{tmp_path / 'ds/train/labels/p1-a.txt'}:2: one-hot view line '0 1 1' has "
                                     "2 ones — a one-hot view line has exactly one 1")
