"""Check a dataset before studying it: ``python -m study.data check DATA.yaml [--split-by patient]``;
frames to label: ``python -m study.data frames SOURCE --out DIR`` (study/media/export_frames.py); a labelling
tool's round trip: ``export-labels`` / ``import-labels`` (study/labeling/).

Validates every label and image (decoding them into the cache, so the study later starts at
once), then prints images, boxes per class, views per class, negatives and groups per split, the
files skipped and why, and a warning when patients (groups) appear in more than one split folder.
Exit status: 0 when the dataset is usable, 2 with one line per problem when it is not.

Named for the command (``python -m study.data``); trainables/data/ is the data layer it checks, and
study/benchmarks/data.py the benchmark ``bench data``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from study.cli import ArgumentParser, run_cli
from study.media.mask import MASK_HELP
from study.media.sources import LIST_HELP
from trainables.config import ConfigError, DataConfig, TrialConfig
from trainables.data.errors import DataError
from trainables.data.loader import LoadReport, apply_groups, load_dataset
from trainables.data.splits import split_overlap
from trainables.data.synthetic import synthetic_data
from trainables.data.types import DecodedData
from trainables.wording import counted

USAGE_ERROR = 2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m study.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a dataset and print its summary")
    check.add_argument("data", help="path to a data.yaml, or 'synthetic'")
    check.add_argument("--split-by", choices=("folders", "patient"), default="folders",
                       help="the dataset's own split folders, or a seeded split by patient (group)")
    check.add_argument("--missing-view", choices=("skip", "error"), default="skip",
                       help="what to do with a label file that has no view line")
    check.add_argument("--imgsz", type=int, default=DataConfig().imgsz, help="letterbox size (multiple of 32)")
    check.add_argument("--group-regex", default=DataConfig().group_regex,
                       help="regex on the file name whose first capture group is the patient id")
    check.add_argument("--val-fraction", type=float, default=DataConfig().val_fraction)
    check.add_argument("--test-fraction", type=float, default=DataConfig().test_fraction)
    check.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    frames = sub.add_parser("frames", help="write the frames of DICOMs / videos as <patient>-<clip>-<frame>.jpg")
    frames.add_argument("source", help="a DICOM, a video, or a folder of them")
    frames.add_argument("--out", required=True, metavar="DIR", help="folder for the frames")
    frames.add_argument("--every", type=int, default=1, metavar="K", help="every K-th frame (default 1: all)")
    frames.add_argument("--patient", default=None, metavar="P",
                        help="the patient part of the names (default for a DICOM: the keyed pseudonym of its "
                             "PatientID; a video needs it)")
    frames.add_argument("--key-file", default=None, metavar="FILE",
                        help="the pseudonym key to use (default: this installation's, created on first use; "
                             "docs/dicom-and-privacy.md)")
    frames.add_argument("--mask", action="append", metavar="X0,Y0,X1,Y1", help=MASK_HELP)
    frames.add_argument("--list-skipped", action="store_true", help=LIST_HELP)
    key = sub.add_parser("key", help="the DICOM pseudonym key: where it is and its fingerprint, or --create it")
    key.add_argument("--create", action="store_true", help="make this installation's key if it has none")
    key.add_argument("--key-file", default=None, metavar="FILE", help="show the fingerprint of this key file")
    from study.labeling.command import add_commands

    add_commands(sub)  # export-labels, import-labels: a labelling tool's round trip (study/labeling/)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command in ("export-labels", "import-labels"):
        from study.labeling.command import run

        return run(args)
    if args.command == "frames":
        from study.media.export_frames import extract
        from study.media.mask import parse_masks

        out = Path(args.out).expanduser()
        key_file = Path(args.key_file).expanduser() if args.key_file else None
        written, clips, tally = extract(Path(args.source).expanduser(), out, args.every, args.patient, key_file,
                                        parse_masks(args.mask))
        print(f"wrote {counted(written, 'frame')} of {counted(clips, 'clip')} to {out}", flush=True)
        tally.finish(args.list_skipped)
        return 0
    if args.command == "key":
        return show_key(args.create, Path(args.key_file).expanduser() if args.key_file else None)
    try:
        source = args.data if args.data == "synthetic" else os.path.abspath(args.data)
        cfg = TrialConfig.from_partial({
            "data.source": source, "data.imgsz": args.imgsz, "data.split": args.split_by,
            "data.missing_view": args.missing_view, "data.group_regex": args.group_regex,
            "data.val_fraction": args.val_fraction, "data.test_fraction": args.test_fraction,
        }).data
        if cfg.source == "synthetic":
            folders = synthetic_data(cfg.synthetic_train, cfg.synthetic_val, cfg.synthetic_test, cfg.imgsz, args.seed)
            report = LoadReport()
        else:
            folders, report = load_dataset(cfg.source, cfg.imgsz, cfg.missing_view, progress=sys.stderr.isatty())
        own = apply_groups(folders, dataclasses.replace(cfg, split="folders"), args.seed)
        final = apply_groups(folders, cfg, args.seed)
    except (DataError, ConfigError) as err:
        print(str(err), file=sys.stderr)
        return USAGE_ERROR
    except OSError as err:  # e.g. an unreadable folder met while walking the dataset
        print(f"{err.filename or args.data}: {err.strerror or err} — check the path and its permissions",
              file=sys.stderr)
        return USAGE_ERROR
    print(summary(final, cfg, report, own))
    return 0


def show_key(create: bool, key_file: Path | None) -> int:
    """``python -m study.data key [--create] [--key-file FILE]``: the key's file and fingerprint."""
    from study.media.pseudonyms import Pseudonyms, key_path

    existed = key_file is not None or key_path().exists()
    keys = Pseudonyms.load(key_file, create=create)
    state = "made now" if keys.created else "exists" if existed else "made by another run just now"
    print(f"key {keys.origin} ({state}; fingerprint {keys.fingerprint}): every DICOM pseudonym is made with it; "
          "outputs and frames record this fingerprint, and a data set mixing two is refused")
    return 0


def summary(data: DecodedData, cfg: DataConfig, report: LoadReport, own: DecodedData) -> str:
    """The printed report: a table per split, skipped files, and the group overlap of the split folders."""
    how = "cache hit" if report.cache_hit else "decoded"
    lines = [
        f"dataset   {cfg.source}",
        f"classes   {', '.join(data.names)}",
        f"views     {', '.join(data.view_names)}",
        f"imgsz     {data.imgsz}   ({how} in {report.seconds:.1f} s; split: {cfg.split})",
        "",
    ]
    header = ["split", "images", "groups", "negatives", *data.names, "|", *data.view_names]
    rows = [header]
    for name, idx in data.splits.items():
        box_rows = data.boxes[np.isin(data.boxes[:, 0].astype(np.int64), idx)]
        per_class = np.bincount(box_rows[:, 1].astype(np.int64), minlength=data.num_classes)
        per_view = np.bincount(data.views[idx], minlength=data.num_views)
        negatives = len(idx) - len(np.unique(box_rows[:, 0]))
        groups = len(np.unique(data.groups[idx]))
        rows.append([name, len(idx), groups, negatives, *per_class.tolist(), "|", *per_view.tolist()])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]

    if report.skipped:
        lines += ["", f"skipped {counted(len(report.skipped), 'file')}:"]
        lines += [f"  {p}" for p in report.skipped]
    if report.keys:
        lines += ["", "pseudonym key " + ", ".join(f"{k} ({counted(n, 'frame')})" for k, n in report.keys.items()) +
                  " (the fingerprint recorded in the frames by python -m study.data frames)"]
    overlap = split_overlap(own.groups, own.splits)
    total = len(np.unique(own.groups))
    lines += ["", f"groups    {total} in all (regex {cfg.group_regex!r})"]
    if overlap.leaks:
        pairs = ", ".join(f"{k} {v}" for k, v in overlap.pairs.items() if v)
        lines.append(f"WARNING: split leak: {len(overlap.shared)} of {total} groups have images in more than one "
                     f"split folder ({pairs}); scores on these splits measure memory of patients, not "
                     "generalisation" + ("" if cfg.split == "patient" else " — use --split-by patient"))
    else:
        lines.append("no group is in more than one split folder")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_cli(main))
