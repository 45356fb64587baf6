"""Label Studio: the labelling configuration and tasks it imports, and its "JSON" export read back.

Out (``export-labels --format label-studio FRAMES --out DIR``): ``DIR/label_config.xml`` (boxes with
RectangleLabels, the view as a single required Choices; the shipped label_studio.xml for the default classes) and
``DIR/tasks.json``, one task per frame, ``{"data": {"image": "/data/local-files/?d=<path>", "frame": <name>}}``:
the frames stay where they are and Label Studio serves them from a Local Files storage (its
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED`` / ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``), so their names - the
patient and clip the split and the folds read - are kept (an upload through the browser prefixes each name
with 8 hex digits and ``-``, which the import takes off again).

In (``import-labels --format label-studio EXPORT``): Label Studio's "JSON" export, a list of tasks, each with
``data.image`` (and ``data.frame`` when it came from tasks.json) and ``annotations[]``, each with ``result[]``:
``rectanglelabels`` regions (``value.x``, ``y``, ``width``, ``height`` in percent of the image,
``original_width`` / ``original_height`` in pixels, ``value.rectanglelabels`` one name) and ``choices``
(``value.choices``: the view). A task without an annotation (or only cancelled ones) is skipped and counted; a
task with several annotations (several annotators) is a problem: which one is right is not ours to guess.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import quoteattr

from study.errors import UsageError
from study.labeling.joint import Box, Labelled, Problems
from trainables.wording import counted

TOOL = "Label Studio"
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")
READ_TYPES = ("rectanglelabels", "choices")


def label_config(names: tuple[str, ...], views: tuple[str, ...]) -> str:
    """The labelling configuration for these classes and views (for the defaults: the shipped label_studio.xml)."""
    labels = "".join(f"    <Label value={quoteattr(n)} background=\"{PALETTE[i % len(PALETTE)]}\"/>\n"
                     for i, n in enumerate(names))
    choices = "".join(f"    <Choice value={quoteattr(v)}/>\n" for v in views)
    return ("<View>\n"
            "  <Image name=\"image\" value=\"$image\" zoom=\"true\" zoomControl=\"true\"/>\n"
            "  <RectangleLabels name=\"label\" toName=\"image\">\n"
            f"{labels}"
            "  </RectangleLabels>\n"
            "  <Header value=\"View\"/>\n"
            "  <Choices name=\"view\" toName=\"image\" choice=\"single\" required=\"true\" showInline=\"true\">\n"
            f"{choices}"
            "  </Choices>\n"
            "</View>\n")


def write_tasks(frames: dict[str, list[Path]], out: Path, names: tuple[str, ...], views: tuple[str, ...],
                document_root: Path) -> list[str]:
    """tasks.json and label_config.xml in ``out``; returns the lines to print (what to do in Label Studio)."""
    root = document_root.resolve()
    tasks = []
    for name, paths in sorted(frames.items()):
        path = paths[0].resolve()
        if len(paths) > 1:
            raise UsageError(f"{paths[1]}: a second frame named {name} (also {paths[0]}) — give export-labels a "
                             "folder where each frame name is found once")
        try:
            relative = path.relative_to(root)
        except ValueError:
            raise UsageError(f"--document-root {document_root}: the frame {path} is not under it — give the folder "
                             "Label Studio serves local files from (a parent of the frames)") from None
        tasks.append({"data": {"image": f"/data/local-files/?d={relative.as_posix()}", "frame": name}})
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tasks.json", "label_config.xml"):
        if (out / name).exists():
            raise UsageError(f"--out {out}: already holds {name} — give a new folder (nothing is overwritten)")
    (out / "tasks.json").write_text(json.dumps(tasks, indent=1) + "\n")
    (out / "label_config.xml").write_text(label_config(names, views))
    storage = os.path.commonpath([str(p[0].resolve().parent) for p in frames.values()])
    return [f"wrote {counted(len(tasks), 'task')} to {out / 'tasks.json'} and the labelling "
            f"configuration to {out / 'label_config.xml'}",
            f"Label Studio: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}; in a new project paste label_config.xml "
            f"(Settings > Labeling Interface > Code), add a Local Files source storage on {storage} (do not sync it), "
            "import tasks.json; when done, Export > JSON and run python -m study.data import-labels "
            "--format label-studio"]


def read_export(path: Path, problems: Problems) -> tuple[list[Labelled], int]:
    """The labelled tasks of a "JSON" export and the number of tasks skipped for having no annotation."""
    file = path.name
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise UsageError(f"{path}: cannot read the export ({err.strerror or err}) — check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not JSON ({err}) — give Label Studio's export in the format 'JSON'") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise UsageError(f"{path}: not a list of tasks — give Label Studio's export in the format 'JSON'")
    if tasks and not any("annotations" in t for t in tasks):
        raise UsageError(f"{path}: its tasks have no 'annotations' (a 'JSON-MIN' or 'CSV'-style export?) — export "
                         "again from Label Studio in the format 'JSON'")
    items, skipped = [], 0
    for number, task in enumerate(tasks, start=1):
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        image = str(data.get("frame") or _image_name(str(data.get("image", ""))))
        where = f"{file}: task {task.get('id', number)}" + (f" ({image})" if image else "")
        if not image:
            problems.add(where, "the task has no data.image", "export the project again in the format 'JSON'")
            continue
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            skipped += 1
            continue
        if len(annotations) > 1:
            problems.add(where, f"{len(annotations)} annotations of one image (several annotators)",
                         "keep one annotation per task in Label Studio (review, then delete the others) and export "
                         "again")
            continue
        item = Labelled(where, image)
        for region in annotations[0].get("result") or []:
            _region(region, item, problems)
        items.append(item)
    return items, skipped


def _image_name(url: str) -> str:
    """The file name in a task's image URL: ``/data/local-files/?d=dir/x.jpg``, ``/data/upload/3/1a2b3c4d-x.jpg``,
    ``s3://bucket/x.jpg``, ``https://host/x.jpg``."""
    parts = urlsplit(url)
    local = parse_qs(parts.query).get("d")
    return os.path.basename(unquote(local[0] if local else parts.path))


def _region(region: Any, item: Labelled, problems: Problems) -> None:
    kind = region.get("type") if isinstance(region, dict) else None
    value = region.get("value") if isinstance(region, dict) else None
    if kind not in READ_TYPES or not isinstance(value, dict):
        problems.add(item.where, f"a region of type {kind!r}: only rectangles (rectanglelabels) and the view "
                     "(choices) are read", "label with the shipped labelling configuration (export-labels writes it)")
        return
    if kind == "choices":
        item.views.extend(str(c) for c in value.get("choices") or [])
        return
    labels = value.get("rectanglelabels") or []
    if len(labels) != 1:
        problems.add(item.where, f"a box with {len(labels)} labels ({', '.join(map(str, labels)) or 'none'})",
                     "give each box exactly one label in Label Studio and export again")
        return
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        rotation = float(value.get("rotation") or 0)
        size = (int(region["original_width"]), int(region["original_height"])) \
            if "original_width" in region and "original_height" in region else None
    except (KeyError, TypeError, ValueError):
        problems.add(item.where, f"box {labels[0]} lacks its x, y, width or height",
                     "export the project again in the format 'JSON'")
        return
    if abs(rotation) > 1e-6:
        problems.add(item.where, f"box {labels[0]} is rotated by {rotation:g} degrees; boxes are axis-aligned",
                     "set the box's rotation to 0 in Label Studio and export again")
        return
    if size is not None:
        if item.size is not None and item.size != size:
            problems.add(item.where, f"its regions give two image sizes ({item.size}, {size})",
                         "export the project again in the format 'JSON'")
            return
        item.size = size
    item.boxes.append(Box(str(labels[0]), x / 100, y / 100, (x + w) / 100, (y + h) / 100))
