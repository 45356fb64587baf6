"""``python -m study.tuned SEARCHED DEFAULT``: did tuning change the answer? A searched folds study against the
default-configuration folds study over the same patients.

Prints and writes into SEARCHED (a study folder or a published one):
  - tuning_gain.parquet: for each method in both studies, its searched configuration's held-out scores against
    its default's, paired by outer fold, in the verdict's words (study/heldout/tuning_gain.py; a method whose
    default configuration is another's, as shared/static's is shared/equal's, against that one's re-runs);
  - chosen_configs.parquet: the configuration each fold's search chose per method, each value's place in its
    search range and whether it sits at the range's edge (study/heldout/chosen.py).
SEARCHED's own verdict.parquet is the comparison of the tuned methods with one another; this command adds what
tuning did to each. Both studies must deal every patient to the same fold (the same --folds and split seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from study.analysis.headline import RUNS_FILE
from study.cli import ArgumentParser, run_cli
from study.errors import UsageError
from study.heldout.chosen import CHOSEN_FILE, chosen_configs
from study.heldout.margins import parse_margins
from study.heldout.tuning_gain import TUNING_GAIN_FILE, default_runs_of, same_folds, tuning_rows
from study.heldout.verdict import verdict_lines, verdict_table
from study.store.manifest import project_code_state
from study.store.trials import write_atomic, write_json_atomic
from study.verdict import MANIFEST, recorded_margins


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.tuned", description=__doc__.split("\n\n")[0])
    p.add_argument("searched", help="the searched folds study (STORAGE/NAME or a published folder)")
    p.add_argument("default", help="the --samples 0 folds study over the same patients")
    p.add_argument("--margin", action="append", default=None, metavar="METRIC=VALUE",
                   help="an equivalence margin, e.g. map50=0.05 (repeatable; default: the searched study's)")
    return p


def read_runs(study: Path) -> pd.DataFrame:
    path = study / RUNS_FILE
    if not path.is_file():
        raise UsageError(f"{study}: no {RUNS_FILE}: give a --folds study's folder")
    return pd.read_parquet(path)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    searched, default = Path(args.searched).expanduser(), Path(args.default).expanduser()
    folds = same_folds(searched, default)
    manifest_path = searched / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    margins = parse_margins(args.margin) if args.margin else recorded_margins(manifest)
    runs, default_runs = read_runs(searched), read_runs(default)
    table = verdict_table(tuning_rows(runs, default_runs, folds, margins))
    write_atomic(table, searched / TUNING_GAIN_FILE)
    chosen = chosen_configs(searched, runs)
    write_atomic(pa.Table.from_pandas(chosen, preserve_index=False), searched / CHOSEN_FILE)

    print(f"tuning, paired by outer fold ({searched.name} against {default.name}; difference = searched - default):")
    for method, twin in default_runs_of(runs, default_runs).items():
        if twin != method:
            print(f"  ({method}'s default configuration is {twin}'s: its default is {twin}'s re-runs)")
    print("\n".join(verdict_lines(table.to_pandas())))
    print("\nchosen configurations (value, and its place in the search range: 0 = low end, 1 = high end):")
    for (method, param), group in chosen.groupby(["method", "param"], sort=False):
        cells = ", ".join(f"f{r.fold} {r.value:.3g} ({r.position:.2f}{' EDGE' if r.at_edge else ''})"
                          for r in group.itertuples())
        print(f"  {method:<16} {param:<22} {cells}")
    edge = chosen[chosen["at_edge"]]
    print(f"{len(edge)} of {len(chosen)} chosen values at the edge of their range (outer 5%)"
          + (": " + ", ".join(sorted(set(edge["method"] + " " + edge["param"]))) if len(edge) else ""))
    print(f"wrote {searched / TUNING_GAIN_FILE}, {searched / CHOSEN_FILE}")
    if manifest:
        manifest["tuning_gain"] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": "python -m study.tuned",
                                   "against": default.name, "code": project_code_state(), "margins": margins}
        write_json_atomic(manifest, manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
