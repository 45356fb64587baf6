"""Read and check a ``data.yaml`` of the joint format.

Keys (others, like ``download``, are ignored):
    path       dataset root; relative to the yaml's own folder; default: that folder.
    train, val image folders (a string or a list of strings), relative to ``path``; required.
    test       image folder(s); optional.
    names      detection class names: a list, or a mapping ``{0: name, 1: name, ...}``; required.
    nc         number of detection classes; optional, must equal ``len(names)`` when given.
    cls_names  view (image class) names, at least 2; the view index is the position in this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainables.data.errors import DataError
from trainables.data.labels import Problem
from trainables.wording import counted

SPLIT_KEYS = ("train", "val", "test")
YAML = "yaml"
FOLDER = "folder"


@dataclass(frozen=True)
class DataSpec:
    """A checked data.yaml: absolute split folders and class names."""

    yaml_path: Path
    yaml_bytes: bytes
    root: Path
    folders: dict[str, list[Path]]  # split name -> image folders (absolute, existing)
    names: tuple[str, ...]
    view_names: tuple[str, ...]
    lines: dict[str, int]  # key -> 1-based line in the yaml, for later messages


def read_data_yaml(path: str | Path) -> DataSpec:
    """Parse and check ``path``; raise :class:`DataError` listing every problem found."""
    yaml_path = Path(path).expanduser().absolute()
    file = str(yaml_path)
    try:
        raw = yaml_path.read_bytes()
    except OSError as err:
        raise DataError([Problem(file, 0, f"cannot read the data.yaml ({err.strerror or err})",
                                 "check the path to the dataset's data.yaml", YAML)]) from None
    try:
        node = yaml.compose(raw.decode("utf-8-sig"))
        doc = yaml.safe_load(raw.decode("utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DataError([Problem(file, line, f"not valid YAML ({what})",
                                 "fix the YAML syntax (key: value, lists as [a, b])", YAML)]) from None
    if not isinstance(doc, dict) or not isinstance(node, yaml.MappingNode):
        raise DataError([Problem(file, 0, "data.yaml is not a mapping of keys to values",
                                 "write keys path, train, val, test, names, cls_names", YAML)])
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    problems: list[Problem] = []

    def bad(key: str, message: str, fix: str, kind: str = YAML) -> None:
        problems.append(Problem(file, lines.get(key, 0), message, fix, kind))

    names = _names(doc, "names", bad, minimum=1)
    view_names = _names(doc, "cls_names", bad, minimum=2)
    if names is not None and "nc" in doc:
        nc = doc["nc"]
        if not isinstance(nc, int) or isinstance(nc, bool) or nc != len(names):
            bad("nc", f"nc is {nc!r} but names lists {counted(len(names), 'class')}",
                "make nc equal the number of names (or drop nc)")

    root = yaml_path.parent
    if doc.get("path") not in (None, ""):
        if not isinstance(doc["path"], str):
            bad("path", f"path is {doc['path']!r}, not a folder name", "write path as a folder, e.g. path: .")
        else:
            root = (yaml_path.parent / Path(doc["path"]).expanduser()).absolute()
            if not root.is_dir():
                bad("path", f"dataset folder {root} does not exist",
                    "fix 'path' (it is relative to the folder of data.yaml)", FOLDER)
    folders: dict[str, list[Path]] = {}
    for key in SPLIT_KEYS:
        value = doc.get(key)
        if value in (None, "", []):
            if key != "test":
                bad(key, f"missing key '{key}'", f"add '{key}: <image folder>' (relative to path)")
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, str) and e for e in entries):
            bad(key, f"'{key}' is {value!r}, not a folder or a list of folders", f"write '{key}: images/{key}'")
            continue
        folders[key] = []
        for entry in entries:
            folder = (root / Path(entry).expanduser()).absolute()
            if folder.is_file():
                bad(key, f"'{key}' points at the file {folder}; image lists are not supported",
                    "point it at the folder holding the images", FOLDER)
            elif not folder.is_dir():
                bad(key, f"{key} folder {folder} does not exist",
                    f"fix '{key}' (relative to path: {root})", FOLDER)
            else:
                folders[key].append(folder)
    if problems:
        raise DataError(problems)
    assert names is not None and view_names is not None  # else a problem was recorded
    return DataSpec(yaml_path, raw, root, folders, names, view_names, lines)


def _names(doc: dict[str, Any], key: str, bad: Any, minimum: int) -> tuple[str, ...] | None:
    """A list or ``{0: a, 1: b}`` mapping of class names -> tuple, or None after reporting the problem."""
    value = doc.get(key)
    what = "detection class" if key == "names" else "view (image class)"
    if value is None:
        bad(key, f"missing key '{key}' (the {what} names)", f"add '{key}: [name0, name1, ...]'")
        return None
    if isinstance(value, dict):
        if sorted(value) != list(range(len(value))):
            bad(key, f"'{key}' keys are {sorted(value, key=str)}, not 0..{len(value) - 1}",
                f"number the {what} names 0, 1, 2, ... or write them as a list")
            return None
        value = [value[i] for i in range(len(value))]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and str(v) for v in value):
        bad(key, f"'{key}' is {value!r}, not a list of names", f"write '{key}: [name0, name1, ...]'")
        return None
    if len(value) < minimum:
        bad(key, f"'{key}' lists {counted(len(value), 'name')}; at least {minimum} are needed",
            f"list every {what} name")
        return None
    return tuple(str(v) for v in value)
