"""``python -m study.predict``: the inverse letterbox, a real tiny checkpoint on a synthetic video and images,
single-task models, and bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from study.cli import run_cli
from study.media.frames_io import SCHEMA
from study.predict import main
from tests.test_evaluate import tiny_checkpoint
from trainables.data.decode import boxes_from_letterbox, boxes_to_letterbox, letterbox_geometry
from trainables.data.synthetic import VIEW_NAMES, draw_frames

av = pytest.importorskip("av")


# -- the inverse letterbox ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 320])
@pytest.mark.parametrize("wh", [(96, 64), (64, 96), (80, 80), (317, 211), (33, 101), (1919, 1080), (7, 640)])
def test_inverse_letterbox_round_trips_within_a_pixel(wh, size):
    """Normalised boxes -> letterboxed pixels (the training mapping) -> back: the original pixels again."""
    w, h = wh
    rng = np.random.default_rng(w * 1000 + h)
    a, b = rng.uniform(0, 1, (50, 2, 2)).transpose(1, 0, 2)  # (50, 2) corner pairs
    norm = np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1)  # (50, 4) x1, y1, x2, y2
    geometry = letterbox_geometry(w, h, size)
    back = boxes_from_letterbox(boxes_to_letterbox(norm, geometry), geometry, w, h)
    truth = norm * np.array([w, h, w, h])
    assert back.shape == (50, 4) and back.dtype == np.float64
    assert np.abs(back - truth).max() < 1.0
    assert np.abs(back - truth).max() < 1e-3 * max(w, h)  # float32 precision of the forward mapping only


def test_inverse_letterbox_by_hand_and_clipped_to_the_image():
    geometry = letterbox_geometry(430, 320, 320)  # (320, 238, 0, 41): padding above and below
    canvas = np.array([[0, 41, 320, 279], [-5, 0, 160, 320], [160, 160, 160, 160]], np.float32)
    back = boxes_from_letterbox(canvas, geometry, 430, 320)
    np.testing.assert_allclose(back[0], [0, 0, 430, 320], atol=1e-9)  # the whole image
    np.testing.assert_allclose(back[1], [0, 0, 215, 320], atol=1e-9)  # reached into the padding: clipped
    np.testing.assert_allclose(back[2], [215, 160 * 320 / 238 - 41 * 320 / 238] * 2, atol=1e-9)
    assert boxes_from_letterbox(np.zeros((0, 4)), geometry, 430, 320).shape == (0, 4)


# -- end to end with a real checkpoint ---------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))[0]


def synthetic_frames(n: int, width: int, height: int, seed: int = 0) -> list[Image.Image]:
    """Echo-like synthetic frames (the training generator's), resized to ``width x height``."""
    images, _, _ = draw_frames(np.random.default_rng(seed), n, 64)  # (n, 3, 64, 64)
    return [Image.fromarray(im.transpose(1, 2, 0)).resize((width, height)) for im in images]


def write_video(path: Path, frames: list[Image.Image], rate: int = 10) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        for im in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(im)))
        container.mux(stream.encode())


def cli(argv: list[Any], capsys) -> tuple[int, str, str]:
    code = run_cli(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_video_round_trips_frames_and_view_rows(checkpoint, tmp_path, capsys):
    write_video(tmp_path / "clip.mp4", synthetic_frames(5, 96, 64))
    # a low --conf so this barely trained model draws boxes and the box rows are exercised too
    code, out, err = cli([checkpoint, tmp_path / "clip.mp4", "--out", tmp_path / "out", "--conf", "0.001",
                          "--batch", "2", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "predict: 5 frames from 1 file" in err and "predictions.parquet" in out
    table = pq.read_table(tmp_path / "out" / "predictions.parquet")
    assert table.schema.equals(SCHEMA)
    df = table.to_pandas()
    assert sorted(df["frame"].unique()) == [0, 1, 2, 3, 4]
    assert (df["source"] == str(tmp_path / "clip.mp4")).all()
    per_frame = df.groupby("frame")
    assert (per_frame["view"].nunique() == 1).all() and df["view"].notna().all()  # one view per frame
    assert df["view"].isin(VIEW_NAMES).all() and df["view_prob"].between(1 / 3, 1).all()
    boxes = df[df["x1"].notna()]
    assert len(boxes) > 0  # at conf 0.001 a 1-epoch detector proposes something
    assert (boxes["x1"] >= 0).all() and (boxes["x2"] <= 96).all() and (boxes["y2"] <= 64).all()
    assert (boxes["x1"] <= boxes["x2"]).all() and (boxes["y1"] <= boxes["y2"]).all()
    assert boxes["class"].notna().all() and boxes["confidence"].gt(0.001).all()
    # a frame has either box rows or exactly one box-less row carrying its view
    boxless = df[df["x1"].isna()]
    assert (boxless.groupby("frame").size() == 1).all()
    assert set(boxless["frame"]).isdisjoint(set(boxes["frame"]))
    with av.open(str(tmp_path / "out" / "clip.mp4")) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(video=0))
        assert Fraction(stream.average_rate) == 10
    assert len(decoded) == 5 and (decoded[0].width, decoded[0].height) == (96, 64)
    # no box clears this threshold: still exactly one row per frame, with its view
    code, _, err = cli([checkpoint, tmp_path / "clip.mp4", "--out", tmp_path / "high", "--conf", "0.9999",
                        "--device", "cpu"], capsys)
    assert code == 0, err
    high = pq.read_table(tmp_path / "high" / "predictions.parquet").to_pandas()
    assert high["frame"].tolist() == [0, 1, 2, 3, 4] and high["x1"].isna().all() and high["view"].notna().all()
    assert high["view"].tolist() == per_frame["view"].first().tolist()  # the view does not depend on --conf


def test_a_folder_of_images_gets_annotated_copies_and_a_row_each(checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, (w, h) in enumerate([(120, 80), (50, 90), (64, 64)]):
        synthetic_frames(1, w, h, seed=i)[0].save(folder / f"im{i}.png")
    synthetic_frames(1, 30, 20)[0].save(folder / "im2.bmp")  # the same stem as im2.png: both keep full names
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image: ignored in a folder")
    code, out, err = cli([checkpoint, folder, "--out", tmp_path / "out", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "warning:" in err and "broken.jpg" in err and "left out" in err  # one bad file does not lose the rest
    df = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pandas()
    assert sorted(Path(s).name for s in df["source"].unique()) == ["im0.png", "im1.png", "im2.bmp", "im2.png"]
    assert (df["frame"] == 0).all() and df["view"].notna().all()
    for name, size in [("im0.jpg", (120, 80)), ("im1.jpg", (50, 90)), ("im2.png.jpg", (64, 64)),
                       ("im2.bmp.jpg", (30, 20))]:
        with Image.open(tmp_path / "out" / name) as im:
            assert im.size == size  # annotated at the original size
    assert "wrote 4 annotated images and 0 videos" in out


@pytest.mark.parametrize("arch", ["det_only", "cls_only"])
def test_single_task_checkpoints_leave_their_missing_columns_null(arch, tmp_path, capsys):
    path = tiny_checkpoint(tmp_path, arch=arch, **{"balancer.name": "equal"})[0]
    synthetic_frames(1, 100, 70)[0].save(tmp_path / "frame.png")
    code, _, err = cli([path, tmp_path / "frame.png", "--out", tmp_path / "out", "--conf", "0.001",
                        "--device", "cpu"], capsys)
    assert code == 0, err
    df = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pandas()
    if arch == "cls_only":
        assert len(df) == 1 and df[["x1", "y1", "x2", "y2", "class", "confidence"]].isna().all().all()
        assert df["view"].notna().all()
    else:
        assert len(df) >= 1 and df["view"].isna().all() and df["view_prob"].isna().all()
    assert (tmp_path / "out" / "frame.jpg").is_file()


@pytest.mark.parametrize("case", ["text", "corrupt-image", "missing", "foreign-checkpoint", "out-is-input"])
def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, case):
    ckpt, source, out = checkpoint, tmp_path / "notes.txt", tmp_path / "out"
    source.write_text("hello")
    expect = "unsupported file type '.txt'"
    if case == "corrupt-image":
        source = tmp_path / "frame.jpg"
        source.write_bytes(b"\xff\xd8 truncated")
        expect = "cannot decode the image"
    elif case == "missing":
        source, expect = tmp_path / "nope.mp4", "no such file or folder"
    elif case == "foreign-checkpoint":
        synthetic_frames(1, 64, 64)[0].save(tmp_path / "frame.png")
        ckpt, source, expect = tmp_path / "notes.txt", tmp_path / "frame.png", "not a readable checkpoint"
    elif case == "out-is-input":
        synthetic_frames(1, 64, 64)[0].save(tmp_path / "frame.jpg")
        source, out, expect = tmp_path / "frame.jpg", tmp_path, "would overwrite the input"
    code, _, err = cli([ckpt, source, "--out", out, "--device", "cpu"], capsys)
    assert code == 2 and expect in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "out" / "predictions.parquet").exists()


def test_a_truncated_video_keeps_its_decodable_frames_and_warns(checkpoint, tmp_path, capsys):
    """FFmpeg ends a cut-off file quietly; the frame count its header states tells us it was cut."""
    frames = synthetic_frames(30, 64, 64)
    with av.open(str(tmp_path / "full.mp4"), "w", options={"movflags": "faststart"}) as container:  # header first
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for im in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(im)))
        container.mux(stream.encode())
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    code, _, err = cli([checkpoint, tmp_path / "cut.mp4", "--out", tmp_path / "out", "--device", "cpu"], capsys)
    assert code == 0 and "header states 30 frames" in err and "truncated" in err
    df = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pandas()
    assert 0 < df["frame"].nunique() < 30 and df["frame"].max() == df["frame"].nunique() - 1


# -- predict and evaluate see one frame alike -----------------------------------------------------------
def test_predict_and_evaluate_give_the_same_boxes_for_one_frame(checkpoint, tmp_path, capsys, monkeypatch):
    """One JPEG frame through ``study.predict`` (predictions.parquet) and through ``study.evaluate`` (the
    boxes its mAP is computed from): the same boxes, classes and scores, and the same view.

    They differ by design in three ways, so the comparison is made at equal settings: predict keeps boxes
    scoring above ``--conf`` (0.25 by default, to draw), evaluate above the checkpoint's ``train.conf_thres``
    (0.001, for mAP): predict is run at that threshold. Evaluate scores boxes in letterboxed pixels against
    letterboxed labels; predict maps them to the frame's pixels, clips them to the frame and drops the boxes
    centred on the letterbox padding: the test maps evaluate's boxes by hand (320 x 200 at 64 px: scale 1/5,
    12 px of padding above and below) and drops the same boxes. The frame is a JPEG at least twice the model's
    size in each side, so a decoder that reads it at a reduced scale in one path and not the other shows."""
    import trainables.engine as engine
    from study.evaluate import main as evaluate_main
    from study.store.checkpoints import load_checkpoint
    from trainables.data.synthetic import NAMES

    images, _, _ = draw_frames(np.random.default_rng(5), 1, 320)  # (1, 3, 320, 320)
    folder = tmp_path / "data" / "images"
    folder.mkdir(parents=True)
    frame = folder / "p1-c1-0.jpg"
    Image.fromarray(images[0].transpose(1, 2, 0)).resize((320, 200)).save(frame, quality=92)
    (tmp_path / "data" / "labels").mkdir()
    (tmp_path / "data" / "labels" / "p1-c1-0.txt").write_text("0 0.5 0.5 0.2 0.2\n\n0 1 0")
    (tmp_path / "data" / "data.yaml").write_text(
        f"path: .\ntrain: images\nval: images\ntest: images\nnames: {list(NAMES)}\ncls_names: {list(VIEW_NAMES)}\n")
    conf = float(load_checkpoint(checkpoint)["config"]["train.conf_thres"])

    seen: dict[str, Any] = {}

    def keep(name: str, real: Any, position: int) -> Any:  # the real metric, its input kept for the test
        def spy(*args: Any, **kwargs: Any) -> Any:
            seen[name] = args[position]
            return real(*args, **kwargs)
        return spy

    monkeypatch.setattr(engine, "detection_metrics", keep("preds", engine.detection_metrics, 0))
    monkeypatch.setattr(engine, "clip_view_metrics", keep("probs", engine.clip_view_metrics, 2))
    assert evaluate_main([str(checkpoint), "--data", str(tmp_path / "data" / "data.yaml"), "--split", "test",
                          "--device", "cpu"]) == 0
    code, _, err = cli([checkpoint, frame, "--out", tmp_path / "out", "--conf", conf, "--device", "cpu"], capsys)
    assert code == 0, err

    (boxes, scores, labels), = seen["preds"]  # one frame: (M, 4) letterboxed xyxy, (M,), (M,)
    boxes, scores, labels = boxes.double().numpy(), scores.double().numpy(), labels.numpy()
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    on_frame = (cy >= 12) & (cy <= 52)  # the 320 x 200 frame is rows 12..52 of the 64 x 64 letterbox
    assert on_frame.sum() >= 10  # enough boxes for the comparison to say something
    expected = np.clip((boxes[on_frame] - [0, 12, 0, 12]) * 5, 0, [320, 200, 320, 200])
    rows = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pandas()
    assert len(rows) == on_frame.sum()  # in predict's order: by descending score, as NMS returns them
    np.testing.assert_allclose(rows[["x1", "y1", "x2", "y2"]].to_numpy(), expected, rtol=0, atol=1e-3)
    np.testing.assert_allclose(rows["confidence"].to_numpy(), scores[on_frame], rtol=0, atol=1e-6)
    assert rows["class_id"].tolist() == labels[on_frame].tolist()
    assert rows["class"].tolist() == [NAMES[i] for i in labels[on_frame]]
    probs = seen["probs"][0]  # (V,) evaluate's view probabilities of the frame
    assert set(rows["view"]) == {VIEW_NAMES[int(probs.argmax())]}
    np.testing.assert_allclose(rows["view_prob"].to_numpy(), probs.max(), rtol=0, atol=1e-6)


def test_help_names_every_kind_of_source_dicom_included(capsys):
    """``--help`` on SOURCE says what it reads: images, videos and DICOMs (cine loops too), and folders of them."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare the words
    source = text[text.index("positional arguments:"):text.index("options:")]
    assert "source an image, a video, a DICOM (one frame or a cine loop), or a folder of them" in source
