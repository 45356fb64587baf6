"""``python -m study.publish STORAGE/NAME OUT``: a study's results without the machine that made them.

Writes into ``OUT`` what a reader and ``python -m study.analyze OUT`` need, and nothing else: ``manifest.json``,
``trials.parquet``, ``epochs.parquet``, ``test_runs.parquet``, ``costs.parquet``, ``headline.parquet``,
``verdict.parquet``, ``folds.parquet``, ``tuning_gain.parquet``, ``chosen_configs.parquet`` (python -m study.tuned)
and ``optuna.db`` where the study has them (a ``--folds`` study's ``fold-k/trials.parquet`` and
``fold-k/epochs.parquet`` pooled into one file each, with a ``fold`` column, and its ``fold-k/optuna.db`` into one
storage whose Optuna studies are named ``fold-k/<method>``). No
checkpoint, no Tune state, no MLflow link: they only mean something on the machine that ran the study.

What is rewritten (every string of every file, the manifest's included):
  - a path inside the study folder becomes relative to it (``fold-0-repeats/trial_.../checkpoint.pt``), one in
    its re-runs' folder ``../NAME-repeats/...``;
  - the data set becomes its data.yaml's parent folder and file name (``regurgitation/data.yaml``), a model's
    weights file its file name; the storage folder ``<storage>``, the home folder ``~``, this tool's source
    folder a relative path and its Python's folder ``<python>`` (the manifest's ``command`` starts ``python``);
  - host names become ``<host>`` and a Ray address (``--address``, a dashboard host that is not loopback)
    ``<address>``; the columns that only name the machine (``node_host``, ``node_ip``, ``cost.host``) are dropped;
  - any other absolute path left in a free-text column (``error``, ``reason``, ...) becomes ``<path>/NAME``.
The manifest gains ``published``: when, by which command, from which commit of this tool, and what was rewritten
and dropped. Then every string of every file written is scanned for what still looks like a path of this
machine (a ``/``-rooted path whose first folder exists here, the home folder, the study's storage or data
folder, the host name): one found is one ``error:`` line naming the file and column, and nothing is written
(``OUT`` is built in a temporary folder and renamed into place). Publishing a published folder changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from study.cli import ArgumentParser, run_cli
from study.errors import UsageError
from trainables.wording import counted

MANIFEST = "manifest.json"
TABLES = ("trials.parquet", "epochs.parquet", "test_runs.parquet", "costs.parquet", "headline.parquet",
          "verdict.parquet", "folds.parquet", "tuning_gain.parquet", "chosen_configs.parquet")
POOLED = ("trials.parquet", "epochs.parquet")  # a --folds study keeps these per fold: fold-k/NAME
OPTUNA_DB = "optuna.db"  # study/store/folder.py
MACHINE_COLUMNS = ("node_host", "node_ip", "cost.host")  # name the machine and nothing else: dropped
HOST_COLUMNS = ("node_host", "node_ip", "cost.host")  # their values name a machine: <host> wherever else they appear
FREE_TEXT = ("error", "reason", "device_warning", "lost")  # messages: a path left in them is shortened
PATH_KEYS = ("data.source", "model.weights")  # config keys whose value is a file
LOOPBACK = ("127.", "localhost", "::1")
PUBLISHED = "published"


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="the study folder STORAGE/NAME that study.run wrote (or a published one)")
    p.add_argument("out", help="the folder to write (replaced if it holds a published study)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    source, out = Path(args.study).expanduser(), Path(args.out).expanduser()
    written = publish(source, out, ["python", "-m", "study.publish", source.name or ".", out.name or "."])
    for name in written:
        path = out / name
        print(f"published: {path} ({path.stat().st_size / 1024:.1f} KiB)")
    return 0


# ---- what is rewritten ------------------------------------------------------------------------------------------

class Scrubber:
    """Rewrites the paths, host names and addresses of the machine that ran a study in one string at a time."""

    def __init__(self, source: Path, manifest: dict[str, Any], hosts: set[str], data_sources: set[str]) -> None:
        """``hosts``: the host names and node IPs the study's files name; ``data_sources``: its absolute data.yamls."""
        settings = manifest.get("settings") or {}
        studies = {str(source.resolve())}
        name = str(settings.get("name") or source.resolve().name)
        storages = {str(source.resolve().parent)}
        if _absolute(settings.get("storage")):
            storages.add(str(settings["storage"]))
            studies.add(str(Path(settings["storage"]) / name))
        rules: dict[str, str] = {}
        for study in studies:
            rules[study] = ""
            rules[f"{study}-repeats"] = f"../{Path(study).name}-repeats"  # a one-split study's re-runs, beside it
        for storage in storages:
            rules[storage] = "<storage>"
        for data in data_sources:
            path = Path(data)
            rules[data] = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
            rules.setdefault(str(path.parent), path.parent.name or "<data>")
        rules.setdefault(str(Path(__file__).resolve().parents[1]), "")  # this tool's own source (tracebacks)
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
            rules.setdefault(str(Path(prefix)), "<python>")
        home = str(Path.home())
        if home not in ("/", ""):
            rules.setdefault(home, "~")
        self.rules = sorted(((k, v) for k, v in rules.items() if k not in ("", "/")), key=lambda kv: -len(kv[0]))
        self.needles = sorted({*studies, *storages, *(str(Path(d).parent) for d in data_sources)}, key=len)
        self.hosts = sorted({h for h in hosts | {socket.gethostname()} if _real_host(h)}, key=len, reverse=True)
        self.tops = top_folders()
        self.changed: dict[str, set[str]] = {}  # file -> the fields it rewrote

    def text(self, value: str, free: bool = False) -> str:
        """``value`` with every known path made relative or named, every host name ``<host>``; ``free``: a message,
        whose other absolute paths become ``<path>/NAME`` too."""
        out = value
        for prefix, repl in self.rules:
            if prefix in out:
                out = re.sub(re.escape(prefix) + r"(/|(?![\w.-]))",
                             lambda m, r=repl: (r + m.group(1)) if r else ("" if m.group(1) else "."), out)
        for host in self.hosts:
            out = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "<host>", out)
        if free:
            out = re.sub(rf"(?<![\w.~<>/-])/(?:{'|'.join(map(re.escape, self.tops))})(?:/[^\s'\",:;()\[\]]*)?",
                         lambda m: f"<path>/{Path(m.group(0)).name}", out) if self.tops else out
        return out

    def value(self, key: str, value: str, free: bool = False) -> str:
        """A field's value: a path-valued config key keeps its file name (its data set folder for a data.yaml)."""
        if key.rsplit(".", 1)[-1] in ("weights",) and _absolute(value):
            return Path(value).name
        return self.text(value, free)


def _absolute(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("/")


def _real_host(host: Any) -> bool:
    return isinstance(host, str) and len(host) >= 2 and host not in ("localhost", "<host>") and not host.startswith(
        LOOPBACK)


def top_folders() -> list[str]:
    """The folders at the root of this machine (``/work``, ``/home``, ...): what a path of it starts with."""
    with contextlib.suppress(OSError):
        return sorted(e.name for e in os.scandir("/") if e.is_dir() and re.fullmatch(r"[\w.-]+", e.name))
    return []


def _address(value: Any) -> Any:
    return value if value in (None, "", "auto") or str(value).startswith(LOOPBACK) else "<address>"


def scrub_manifest(manifest: dict[str, Any], scrub: Scrubber) -> dict[str, Any]:
    before = json.dumps(manifest, sort_keys=True)
    out = _scrub_json(manifest, scrub, "")
    settings = out.get("settings")
    if isinstance(settings, dict):
        for key in ("address", "dashboard_host"):
            if key in settings:
                settings[key] = _address(settings[key])
    if isinstance(out.get("command"), list) and out["command"] and isinstance(out["command"][0], str):
        out["command"][0] = Path(out["command"][0]).name or out["command"][0]  # the Python that ran it
    for argv in _argvs(out):
        for i, flag in enumerate(argv[:-1]):
            if flag in ("--address", "--dashboard-host"):
                argv[i + 1] = _address(argv[i + 1])
    if json.dumps(out, sort_keys=True) != before:
        scrub.changed.setdefault(MANIFEST, set()).update(
            _changed_keys(manifest, out, "") or {"(values)"})
    return out


def _argvs(manifest: dict[str, Any]) -> Iterator[list[Any]]:
    for argv in (manifest.get("command"), (manifest.get("settings") or {}).get("argv"),
                 *((r or {}).get("argv") for r in manifest.get("runs") or [])):
        if isinstance(argv, list):
            yield argv


def _scrub_json(obj: Any, scrub: Scrubber, key: str) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub_json(v, scrub, str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub_json(v, scrub, key) for v in obj]
    if isinstance(obj, str):
        return scrub.value(key, obj, free=True)
    return obj


def _changed_keys(a: Any, b: Any, where: str) -> set[str]:
    """The manifest's fields that differ, as ``settings.storage``, ``runs[].argv``, ``command``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k for key in a for k in _changed_keys(a[key], b.get(key), f"{where}.{key}" if where else str(key))}
    if isinstance(a, list) and isinstance(b, list):
        inner = f"{where}[]" if a and isinstance(a[0], dict) else where
        return {k for x, y in zip(a, b, strict=False) for k in _changed_keys(x, y, inner)}
    return set() if a == b else {where}


def scrub_table(table: pa.Table, name: str, scrub: Scrubber) -> pa.Table:
    """The table without the machine's columns, every string cell through ``scrub``."""
    dropped = [c for c in MACHINE_COLUMNS if c in table.column_names]
    if dropped:
        table = table.drop_columns(dropped)
        scrub.changed.setdefault(name, set()).update(f"-{c}" for c in dropped)
    for i, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        values = table.column(i).to_pylist()
        new = [v if v is None else scrub.value(field.name, v, free=field.name in FREE_TEXT) for v in values]
        if new != values:
            table = table.set_column(i, field, pa.array(new, type=field.type))
            scrub.changed.setdefault(name, set()).add(field.name)
    return table


# ---- what is read -----------------------------------------------------------------------------------------------

def fold_files(source: Path, name: str) -> list[tuple[int, Path]]:
    """A --folds study's per-fold ``fold-k/NAME`` files, in fold order."""
    found = []
    for path in source.glob(f"fold-*/{name}"):
        k = path.parent.name.partition("-")[2]
        if k.isdigit():
            found.append((int(k), path))
    return sorted(found)


def read_tables(source: Path) -> dict[str, pa.Table]:
    """name -> table of every file the published folder holds (the folds' own files pooled)."""
    tables: dict[str, pa.Table] = {}
    for name in TABLES:
        parts = fold_files(source, name) if name in POOLED and (source / "folds.parquet").is_file() else []
        try:
            if parts and not (source / name).is_file():
                tables[name] = pool([(k, pq.read_table(p)) for k, p in parts])
            elif (source / name).is_file():
                tables[name] = pq.read_table(source / name)
        except (OSError, pa.ArrowException) as err:
            raise UsageError(f"{source / name}: not a readable Parquet file ({type(err).__name__}); "
                             "re-run or --resume the study to rewrite it") from None
    return tables


def pool(parts: list[tuple[int, pa.Table]]) -> pa.Table:
    """The folds' tables as one, each row with its ``fold`` (columns one fold lacks are null there)."""
    tagged = [t.drop_columns([c for c in ("fold",) if c in t.column_names]).append_column(
        "fold", pa.array([k] * len(t), type=pa.int64())) for k, t in parts]
    return pa.concat_tables(tagged, promote_options="permissive")


def hosts_of(tables: dict[str, pa.Table]) -> set[str]:
    return {str(v) for t in tables.values() for c in HOST_COLUMNS if c in t.column_names
            for v in t.column(c).to_pylist() if v}


def data_sources(tables: dict[str, pa.Table], manifest: dict[str, Any]) -> set[str]:
    """The absolute data.yaml paths the study names (the manifest's, the tables' ``data`` and ``data.source``)."""
    found = {str(v) for t in tables.values() for c in ("data", "data.source") if c in t.column_names
             for v in t.column(c).to_pylist() if _absolute(v)}
    for config in ((manifest.get("settings") or {}).get("config"), manifest.get("base_config")):
        if isinstance(config, dict) and _absolute(config.get("data.source")):
            found.add(str(config["data.source"]))
    return found


# ---- the check --------------------------------------------------------------------------------------------------

def machine_marks(needles: list[str] = (), hosts: list[str] = ()) -> re.Pattern[str]:
    """What a string of this machine looks like: a ``/``-rooted path whose first folder exists here, the home
    folder, any of ``needles`` (a study's storage and data folders), a host name as a word."""
    parts = []
    tops = top_folders()
    if tops:
        parts.append(rf"(?<![\w.~<>/-])/(?:{'|'.join(map(re.escape, tops))})(?![\w.-])")
    home = str(Path.home())
    parts += [re.escape(n) for n in {*needles, home} if n not in ("", "/")]
    parts += [rf"(?<![\w.-]){re.escape(h)}(?![\w-])" for h in {*hosts, socket.gethostname()} if _real_host(h)]
    return re.compile("|".join(parts) or r"(?!)")


def find_machine_strings(folder: Path, needles: list[str] = (), hosts: list[str] = ()) -> list[str]:
    """One line per field of the files in ``folder`` that holds a string of this machine: every string cell of every
    Parquet file, every key and string of manifest.json, every text cell of optuna.db."""
    mark = machine_marks(needles, hosts)
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            for field in table.schema:
                hit = next((v for v in table.column(field.name).to_pylist() if isinstance(v, str) and mark.search(v)),
                           None)
                if hit is not None:
                    found.append(f"{rel} column {field.name}: {hit[:120]!r}")
        elif path.name == MANIFEST:
            for where, text in _json_strings(json.loads(path.read_text()), ""):
                if mark.search(text):
                    found.append(f"{rel} {where or 'key'}: {text[:120]!r}")
        elif path.suffix == ".db":
            found += [f"{rel} {where}: {text[:120]!r}" for where, text in _db_strings(path) if mark.search(text)]
    return found


def _json_strings(obj: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield where, str(k)
            yield from _json_strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for v in obj:
            yield from _json_strings(v, f"{where}[]")
    elif isinstance(obj, str):
        yield where, obj


def _db_strings(path: Path) -> Iterator[tuple[str, str]]:
    """Every text cell of an SQLite file, as (table.column, text)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            cursor = db.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, v in zip(columns, row, strict=True):
                    if isinstance(v, bytes):
                        v = v.decode("utf-8", "replace")
                    if isinstance(v, str):
                        yield f"{table}.{column}", v


# ---- the command ------------------------------------------------------------------------------------------------

def publish(source: Path, out: Path, command: list[str]) -> list[str]:
    """Write the published copy of study folder ``source`` to ``out``; the names of the files written."""
    if not source.is_dir():
        raise UsageError(f"{source}: no such folder; give the study folder STORAGE/NAME that study.run wrote")
    if out.resolve() == source.resolve():
        raise UsageError(f"{out}: the study folder itself; publish into another folder, then move it")
    if not (source / MANIFEST).is_file():
        raise UsageError(f"{source}: no {MANIFEST} here; give the study folder STORAGE/NAME that study.run wrote")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise UsageError(f"{out}: exists and is not a published study; give a new folder (or remove it)")
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{source / MANIFEST}: unreadable ({type(err).__name__}); it is what says what ran") from None
    tables = read_tables(source)
    if not tables:
        raise UsageError(f"{source}: no result files (trials.parquet, test_runs.parquet, ...): nothing to publish")
    hosts = hosts_of(tables)
    scrub = Scrubber(source, manifest, hosts, data_sources(tables, manifest))
    # the published entry keeps its place among the keys (a later entry, e.g. verdict_rebuilt, stays after it)
    new_manifest = scrub_manifest({k: (None if k == PUBLISHED else v) for k, v in manifest.items()}, scrub)
    written: dict[str, pa.Table | None] = {}  # None: copied as is (nothing to rewrite)
    for name, table in tables.items():
        pooled = not (source / name).is_file()
        scrubbed = scrub_table(table, name, scrub)
        if pooled:
            scrub.changed.setdefault(name, set()).add("(pooled from fold-*/" + name + ", column fold)")
        written[name] = scrubbed if pooled or name in scrub.changed else None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.publish-", dir=out.parent) as tmp_name:
        tmp = Path(tmp_name) / "out"
        tmp.mkdir()
        for name, table in written.items():
            if table is None:
                shutil.copyfile(source / name, tmp / name)
            else:
                pq.write_table(table, tmp / name)
        db = _optuna_db(source, scrub, tmp / OPTUNA_DB)
        new_manifest[PUBLISHED] = _published(manifest, scrub, source, db, command)
        (tmp / MANIFEST).write_text(json.dumps(new_manifest, indent=2, default=str))
        if found := find_machine_strings(tmp, scrub.needles, scrub.hosts):
            raise UsageError(f"{source}: {found[0]} still names this machine after publishing "
                             f"({counted(len(found), 'field')} in all); nothing written")
        _replace(tmp, out)
    return sorted(p.name for p in out.iterdir())


def _optuna_db(source: Path, scrub: Scrubber, target: Path) -> bool:
    """Write the study's Optuna record to ``target`` where it holds no string of this machine (SQLite is not
    rewritten: a record that names the machine is left out, and said so); whether it was written. A --folds
    study keeps one optuna.db per fold: they are pooled into one, each Optuna study renamed ``fold-k/<method>``
    (study/heldout/chosen.py reads either layout)."""
    folds = fold_files(source, OPTUNA_DB)
    if (source / OPTUNA_DB).is_file():
        shutil.copyfile(source / OPTUNA_DB, target)
    elif folds:
        try:
            _pool_optuna(folds, target)
        except (sqlite3.Error, ValueError, KeyError) as err:  # optuna raises these for a damaged storage
            scrub.changed.setdefault(OPTUNA_DB, set()).add(f"-(the folds' storages could not be pooled: "
                                                            f"{type(err).__name__}; left out)")
            target.unlink(missing_ok=True)
            return False
    else:
        return False
    mark = machine_marks(scrub.needles, scrub.hosts)
    try:
        clean = not any(mark.search(text) for _, text in _db_strings(target))
    except sqlite3.Error:
        clean = False
    if not clean:
        scrub.changed.setdefault(OPTUNA_DB, set()).add("-(holds a path of this machine: left out)")
        target.unlink()
    return clean


def _pool_optuna(folds: list[tuple[int, Path]], target: Path) -> None:
    """Copy every Optuna study of each ``fold-k/optuna.db`` into one SQLite storage at ``target`` as ``fold-k/<name>``
    (optuna.copy_study: trials, their distributions, values and attributes, unchanged)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    to_storage = f"sqlite:///{target.resolve()}"
    for k, path in folds:
        from_storage = f"sqlite:///{path.resolve()}"
        for summary in optuna.get_all_study_summaries(from_storage):
            optuna.copy_study(from_study_name=summary.study_name, from_storage=from_storage,
                              to_storage=to_storage, to_study_name=f"fold-{k}/{summary.study_name}")


def _published(manifest: dict[str, Any], scrub: Scrubber, source: Path, db: bool, command: list[str]
               ) -> dict[str, Any]:
    """The manifest's ``published`` entry. A folder published before whose files needed nothing keeps its own."""
    previous = manifest.get(PUBLISHED)
    if isinstance(previous, dict) and not scrub.changed:
        return previous
    from study.store.manifest import project_code_state

    names = {p.name for p in source.iterdir()} - {MANIFEST, *TABLES} - ({OPTUNA_DB} if db else set())
    trial_dirs = {n for n in names if n.startswith("trial_")}
    left_out = [*sorted(names - trial_dirs), *([f"{len(trial_dirs)} trial_* folders (checkpoints, Tune results)"]
                                               if trial_dirs else [])]
    return {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "code": project_code_state(),  # the publishing code: its commit, dirty flag and hash
        "rewritten": {name: sorted(f for f in fields if not f.startswith("-"))
                      for name, fields in sorted(scrub.changed.items()) if any(not f.startswith("-") for f in fields)},
        "dropped_columns": {name: sorted(f[1:] for f in fields if f.startswith("-") and not f.startswith("-("))
                            for name, fields in sorted(scrub.changed.items())
                            if any(f.startswith("-") and not f.startswith("-(") for f in fields)},
        "left_out": [scrub.text(n) for n in left_out],
        "rules": ("paths in the study folder relative to it; its re-runs' folder ../NAME-repeats; a data.yaml as "
                  "FOLDER/data.yaml; a model's weights file by its name; the storage folder <storage>; the home "
                  "folder ~; Python's folder <python>; host names <host>; a Ray address <address>; other absolute "
                  "paths in messages <path>/NAME"),
        **({"earlier": previous} if isinstance(previous, dict) else {}),
    }


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an older published folder at ``out`` goes only once it is there."""
    out = out.resolve()
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        shutil.move(str(tmp), str(out))
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
