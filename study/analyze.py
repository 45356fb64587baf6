"""``python -m study.analyze STORAGE/NAME``: the study's report as one self-contained HTML file.

Reads ``trials.parquet``, ``epochs.parquet`` and ``manifest.json`` from the study folder, writes
``report.html`` next to them (plotly.js inside: it opens offline) and prints its path.
``--format png`` also writes PNGs of the main figures (needs the optional ``kaleido`` package).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from study.analysis.loading import load_study
from study.analysis.report import build_report
from study.cli import ArgumentParser, run_cli
from study.errors import UsageError
from study.store.atomic import atomic_path
from study.tracking.mlflow_study import RUN_FILE
from trainables.wording import counted

PNG_FIGURES = ("headline", "pareto", "balance", "curves", "slices", "importance")  # parcoords is WebGL


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="the study folder STORAGE/NAME (holds trials.parquet)")
    p.add_argument("--out", default=None, help="the HTML file to write (default STUDY/report.html)")
    p.add_argument("--markdown", action="store_true",
                   help="print the held-out headline, the paired verdict and the cost ratios as Markdown tables "
                        "(from headline.parquet and verdict.parquet only) instead of writing the report")
    p.add_argument("--format", choices=["html", "png"], default="html",
                   help="html (default): the report; png: the report plus PNGs of the main figures in "
                        "STUDY/figures/ (needs kaleido)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.format == "png" and importlib.util.find_spec("kaleido") is None:
        raise UsageError("--format png: kaleido is not installed, so no static images can be written "
                         "(pip install kaleido; or use the HTML report, whose figures each have a PNG button)")
    if args.markdown:  # the headline and verdict tables only: from the two files, no trials needed
        from study.analysis.markdown import markdown, missing_files

        folder = Path(args.study).expanduser()
        if missing := missing_files(folder):
            raise UsageError(f"--markdown: {folder} has no {' or '.join(missing)}: the tables come from a study run "
                             "with --test (held-out scores) and --folds or several methods (the verdict)")
        print(markdown(folder))
        return 0
    study = load_study(args.study)
    report = build_report(study)
    out = Path(args.out).expanduser() if args.out else study.path / "report.html"
    _write_text(out, report.html)
    print(f"report: {out.resolve()} ({out.stat().st_size / 2**20:.1f} MiB, {counted(len(study.trials), 'trial')})")
    if (study.path / RUN_FILE).is_file():  # a study run with --mlflow: the report joins its run
        from study.tracking.mlflow_study import log_report

        log_report(study.path, out)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.format == "png":
        folder = out.parent / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        for name in PNG_FIGURES:
            fig = report.figures.get(name)
            if fig is not None:
                path = folder / f"{name}.png"
                try:
                    fig.write_image(path, width=1400, height=fig.layout.height or 600, scale=1)
                except Exception as err:  # kaleido needs a Chrome/Chromium it can start
                    raise UsageError(f"--format png: kaleido could not render {name}.png ({type(err).__name__}: "
                                     f"{str(err).splitlines()[0][:200] if str(err) else ''}); the HTML report "
                                     f"is written at {out}") from None
                print(f"figure: {path.resolve()}")
    return 0


def _write_text(path: Path, text: str) -> None:
    """Through a temporary file and a rename: a browser never opens half a report."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{path}: cannot write the report ({err.strerror or err}); use --out elsewhere") from None


if __name__ == "__main__":
    sys.exit(run_cli(main))
