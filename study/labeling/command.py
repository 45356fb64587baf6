"""``python -m study.data export-labels`` and ``import-labels``: the subcommands of study/data.py for labelling.

    python -m study.data export-labels --format label-studio to_label/ --out ls/   # tasks.json + label_config.xml
    python -m study.data import-labels --format label-studio export.json --images to_label/ --out dataset/
    python -m study.data import-labels --format cvat annotations.xml --images to_label/ --out dataset/
    python -m study.data import-labels --format cvat yolo.zip --tags annotations.xml --images to_label/ --out dataset/

Every problem of an export is one ``error:`` line (where, what, what to do) and nothing is written; the dataset
written passes ``python -m study.data check``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from study.errors import UsageError
from trainables.wording import counted

COMMANDS = ("export-labels", "import-labels")
FORMATS = ("label-studio", "cvat")


def add_commands(sub: Any) -> None:
    """Register both subcommands on study/data.py's subparsers."""
    classes = argparse.ArgumentParser(add_help=False)
    classes.add_argument("--names", default=None, metavar="A,B,...",
                         help="detection classes, in class-id order (default: AR,MR,PR,TR of the shipped "
                              "study/labeling/label_studio.xml)")
    classes.add_argument("--views", default=None, metavar="X,Y,...",
                         help="views (image classes), in one-hot order (default: A4C,PLAX,PSAX)")
    out = sub.add_parser("export-labels", parents=[classes],
                         help="write what a labelling tool imports for a folder of frames")
    out.add_argument("frames", help="the folder of frames to label (python -m study.data frames --out)")
    out.add_argument("--format", choices=FORMATS, required=True, help="the labelling tool")
    out.add_argument("--out", required=True, metavar="DIR", help="folder for tasks.json / label_config.xml / "
                                                                  "cvat_labels.json")
    out.add_argument("--document-root", default=None, metavar="DIR",
                     help="label-studio: the folder Label Studio serves local files from "
                          "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; default: the parent of FRAMES)")
    back = sub.add_parser("import-labels", parents=[classes],
                          help="read a labelling tool's export into the joint YOLO layout (data.yaml)")
    back.add_argument("export", help="label-studio: the 'JSON' export; cvat: 'CVAT for images 1.1' (annotations.xml, "
                                     "or its zip) or a 'YOLO 1.1' zip/folder with --tags")
    back.add_argument("--format", choices=FORMATS, required=True, help="the labelling tool")
    back.add_argument("--images", required=True, metavar="DIR", help="the folder of the labelled frames")
    back.add_argument("--out", required=True, metavar="DIR", help="a new folder for the dataset")
    back.add_argument("--tags", default=None, metavar="XML",
                      help="cvat with a 'YOLO 1.1' export: the same task's 'CVAT for images 1.1' export, for the views")


def run(args: argparse.Namespace) -> int:
    from study.labeling import cvat, label_studio
    from study.labeling.joint import Problems, finish, frame_index, parse_classes

    names, views = parse_classes(args.names, args.views)
    if args.command == "export-labels":
        frames_dir = Path(args.frames).expanduser()
        frames = frame_index(frames_dir)
        out = Path(args.out).expanduser()
        if args.format == "label-studio":
            root = Path(args.document_root).expanduser() if args.document_root else frames_dir.resolve().parent
            lines = label_studio.write_tasks(frames, out, names, views, root)
        else:
            lines = cvat.write_labels(out, names, views)
        print("\n".join(lines))
        return 0
    export = Path(args.export).expanduser()
    if not export.exists():
        raise UsageError(f"{export}: no such file or folder — give the labelling tool's export")
    if args.tags is not None and args.format != "cvat":
        raise UsageError("--tags: only for --format cvat with a 'YOLO 1.1' export")
    problems = Problems()
    if args.format == "label-studio":
        items, skipped = label_studio.read_export(export, problems)
        tool, unit = label_studio.TOOL, "task"
    else:
        items, skipped = cvat.read_export(export, Path(args.tags).expanduser() if args.tags else None, problems)
        tool, unit = cvat.TOOL, "image"
    lines = finish(items, Path(args.images).expanduser(), Path(args.out).expanduser(), names, views, tool,
                   str(export), problems)
    if skipped:
        lines.insert(1, f"skipped {counted(skipped, unit)} not labelled yet (no annotation)")
    print("\n".join(lines))
    return 0
