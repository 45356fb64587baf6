"""A study as an MLflow parent run: what it is when it begins, its files and verdict when it ends.

``python -m study.run --mlflow URI`` (study/tuning/mlflow_trials.py logs each trial as a child run of it):

- **begins** (``begin_parent``): one run named after the study in the experiment ``--mlflow-experiment``, tagged
  with the study's folder, git commit, dataset fingerprint and command, its command-line settings as params and
  ``manifest.json`` as an artifact. Its id is kept in ``STUDY/mlflow.json``, so a ``--resume`` continues the same
  run (and the same child runs) instead of opening new ones;
- **ends** (``finish_parent``): the study's Parquet files and manifest as artifacts, the held-out headline and the
  paired verdict as metrics (``heldout/<method>/<column>``, ``verdict/<a> vs <b>/<metric>/diff_mean``, ...) and as
  tables (``headline.json``, ``verdict.json``, which MLflow's UI shows as tables);
  with held-out scores (``--test``, ``--folds``), each method's chosen model with its card is logged and registered
  in the model registry (study/tracking/mlflow_model.py);
- ``python -m study.analyze`` adds ``report.html`` to the run of a study that has ``mlflow.json``
  (``log_report``).

Nothing here runs without ``--mlflow``: the rest of the tool never imports this module or MLflow. Credentials
go in MLflow's own environment variables (``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` / ``_TOKEN``): a URI
that carries them (``http://user:password@host``) is refused (``resolve_uri``) and never echoed, because the URI
is written to the manifest, ``mlflow.json``, the run's tags, Tune's state and the console.

A server that stops answering mid-study costs one warning, not the study (``lose_tracking``): the callbacks
and the parent's end stop calling it for the rest of the process, and the study's own files are complete.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.errors import UsageError

RUN_FILE = "mlflow.json"  # in the study folder: where its parent run is
_OPEN: dict[Path, ParentRun] = {}  # study folder -> the parent run this process opened and has not finished
ARTIFACT_FILES = ("trials.parquet", "epochs.parquet", "folds.parquet", "test_runs.parquet", "headline.parquet",
                  "verdict.parquet", "costs.parquet", "manifest.json")
SETTINGS_PARAMS = ("space", "samples", "epochs", "seed", "folds", "repeat_best", "seeds", "objective", "scheduler",
                   "methods", "test", "costs")
_METRIC_KEY = re.compile(r"[^\w\-. /]")  # the characters MLflow accepts in a metric name
# mtl.phase of a child run: which Tune experiment of the study the trial ran in (study/tuning/search.py)
PHASE_TAG = "mtl.phase"
SEARCH, RERUN = "search", "rerun"  # the search (Optuna), the --repeat-best re-runs (NAME-repeats)
PHASES = (SEARCH, RERUN)
CREDENTIAL_VARIABLES = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
_lost: set[str] = set()  # tracking URIs whose server stopped answering in this process


@dataclass(frozen=True)
class ParentRun:
    """Where a study's parent run is: the tracking URI, the experiment and the run."""

    tracking_uri: str
    experiment_id: str
    experiment_name: str
    run_id: str

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)


def resolve_uri(flag: str | None, environ: dict[str, str]) -> str | None:
    """The tracking URI ``--mlflow`` asks for: its value, or ``MLFLOW_TRACKING_URI`` for a bare ``--mlflow``;
    None without the flag (the environment variable alone tracks nothing: nothing leaves the machine unasked)."""
    if flag is None:
        return None
    if flag:
        refuse_credentials(flag, "--mlflow")
        return flag
    uri = environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise UsageError("--mlflow without a URI reads MLFLOW_TRACKING_URI, which is not set: give --mlflow "
                         "http://HOST:PORT (your MLflow server) or set MLFLOW_TRACKING_URI")
    refuse_credentials(uri, "--mlflow (MLFLOW_TRACKING_URI)")
    return uri


def refuse_credentials(uri: str, where: str) -> None:
    """A URI with a user name or password (``scheme://user:password@host``) is refused; the message never repeats
    the URI (or any part of it), only where it came from and the way that keeps credentials out of every file."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:  # an unparseable URI: look for userinfo ourselves
        userinfo = "@" in uri.split("://", 1)[-1].split("/", 1)[0]
    if userinfo:
        raise UsageError(f"{where}: the tracking URI carries credentials (user:password@); they would be written to "
                         "the study's manifest, its runs' tags, Tune's state and the console — give the URI without "
                         f"them (http://HOST:PORT) and set {CREDENTIAL_VARIABLES}")


def tracking_lost(uri: str) -> bool:
    """The tracking server at ``uri`` stopped answering earlier in this process: nothing more is sent to it."""
    return uri in _lost


def lose_tracking(uri: str, what: str, err: BaseException) -> None:
    """Say once that the server at ``uri`` stopped answering (while doing ``what``); stop calling it."""
    if uri in _lost:
        return
    _lost.add(uri)
    reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
    print(f"warning: mlflow: the tracking server at {uri} stopped answering ({what}: {reason}); the study goes on "
          "without it — its results are complete in the study folder, and its runs there stay as they were",
          file=sys.stderr, flush=True)


def check_tracking(uri: str) -> None:
    """MLflow is installed and the tracking server answers: one line otherwise, before anything is written."""
    import_mlflow()
    check_reachable(uri)


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail fast on a tracking server that does not answer (MLflow's client retries for minutes)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return  # a local store (file:, sqlite:) or a scheme MLflow resolves itself (databricks, ...)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise UsageError(f"--mlflow {uri}: no MLflow server answers there ({err.strerror or err}); start one "
                         "(mlflow server --host 127.0.0.1 --port 5000) or check the URI") from None


def import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise UsageError('--mlflow: MLflow is not installed; pip install -e ".[mlflow]"') from None
    return mlflow


def metric_key(*parts: str) -> str:
    """An MLflow metric name from parts (a method label such as ``shared@2/gradnorm`` keeps its slash)."""
    return _METRIC_KEY.sub("_", "/".join(parts))


def read_parent(study_dir: Path) -> ParentRun | None:
    """The parent run of the study in ``study_dir`` (or, for a fold's folder ``STUDY/fold-K``, of its study)."""
    for path in (Path(study_dir) / RUN_FILE, Path(study_dir).parent / RUN_FILE):
        if path.is_file():
            return ParentRun(**json.loads(path.read_text()))
    return None


def begin_parent(study_dir: Path, settings: Any, fingerprint: str) -> ParentRun:
    """Open (or, on ``--resume``, reopen) the study's parent run; see the module docstring."""
    import_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = settings.mlflow
    client = MlflowClient(tracking_uri=uri)
    own = study_dir / RUN_FILE  # this study's own (read_parent also looks one folder up, for a fold's folder)
    previous = ParentRun(**json.loads(own.read_text())) if own.is_file() else None
    try:
        if previous is not None and previous.tracking_uri == uri:
            client.update_run(previous.run_id, status="RUNNING")  # a --resume: the same run goes on
            parent = previous
        else:
            name = settings.mlflow_experiment
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            from study.store.manifest import git_commit

            tags = {"mtl.study": study_dir.name, "mtl.study_dir": str(study_dir.resolve()), "mtl.role": "study",
                    "mtl.git_commit": git_commit(), "mtl.dataset_fingerprint": fingerprint,
                    "mtl.command": " ".join(["python -m study.run", *settings.argv])[:5000]}
            run = client.create_run(experiment_id, run_name=study_dir.name, tags=tags)
            parent = ParentRun(uri, experiment_id, name, run.info.run_id)
            from mlflow.entities import Param

            params = {k: getattr(settings, k) for k in SETTINGS_PARAMS}
            params.update({f"config.{k}": v for k, v in settings.config.items()})
            client.log_batch(parent.run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
        client.log_artifact(parent.run_id, str(study_dir / "manifest.json"))
    except MlflowException as err:
        raise UsageError(f"--mlflow {uri}: {str(err).splitlines()[0][:300]}") from None
    except OSError as err:  # no server answers there
        raise UsageError(f"--mlflow {uri}: cannot reach the tracking server ({err})") from None
    own.write_text(json.dumps(parent.__dict__, indent=2))
    _OPEN[study_dir] = parent
    print(f"mlflow: study run {parent.run_id} in experiment {parent.experiment_name!r} at {uri}", flush=True)
    return parent


def end_unfinished(status: str) -> None:
    """Mark the parent runs this process opened and did not finish ``status`` (``FAILED``: an error;
    ``KILLED``: Ctrl-C): a run left ``RUNNING`` claims a study still going, and a start that failed after opening
    it leaves no study folder at all. Called by the command on its way out; a server gone costs one warning."""
    while _OPEN:
        _, parent = _OPEN.popitem()
        if tracking_lost(parent.tracking_uri):
            continue
        try:
            client = parent.client()
            if client.get_run(parent.run_id).info.status == "RUNNING":
                client.set_terminated(parent.run_id, status=status)
                print(f"mlflow: study run {parent.run_id} marked {status}", file=sys.stderr, flush=True)
        except Exception as err:  # the server is gone: the study's own files say what happened
            lose_tracking(parent.tracking_uri, f"marking study run {parent.run_id} {status}", err)


def finish_parent(study_dir: Path) -> None:
    """Log the study's files, held-out headline and verdict to its parent run and mark it finished (a warning, not
    an error, when the server stopped answering)."""
    parent = read_parent(study_dir)
    _OPEN.pop(study_dir, None)
    if parent is None or tracking_lost(parent.tracking_uri):
        return
    try:
        _finish(study_dir, parent)
    except Exception as err:  # a server gone since the study began: the study's own files are complete
        lose_tracking(parent.tracking_uri, f"finishing study run {parent.run_id}", err)


def _finish(study_dir: Path, parent: ParentRun) -> None:
    import pandas as pd

    client = parent.client()
    for name in ARTIFACT_FILES:
        if (study_dir / name).is_file():
            client.log_artifact(parent.run_id, str(study_dir / name), artifact_path="study")
    from mlflow.entities import Metric

    metrics: list[Metric] = []
    headline, verdict = study_dir / "headline.parquet", study_dir / "verdict.parquet"
    if headline.is_file():
        table = pd.read_parquet(headline)
        client.log_table(parent.run_id, data=table, artifact_file="headline.json")
        for row in table.to_dict("records"):
            metrics += _numbers(row, ("heldout", str(row["method"])))
    if verdict.is_file():
        table = pd.read_parquet(verdict)
        client.log_table(parent.run_id, data=table, artifact_file="verdict.json")
        for row in table.to_dict("records"):
            pair = f"{row['method_a']} vs {row['method_b']}"
            metrics += _numbers({k: row.get(k) for k in ("diff_mean", "ci_low", "ci_high", "n_pairs")},
                                ("verdict", pair, str(row["metric"])))
    for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
        client.log_batch(parent.run_id, metrics=metrics[start:start + 1000])
    if headline.is_file():  # a study with held-out scores: its chosen models into the registry
        from study.tracking.mlflow_model import register_chosen

        register_chosen(study_dir, parent)
        if tracking_lost(parent.tracking_uri):
            return
    client.set_terminated(parent.run_id, status="FINISHED")
    print(f"mlflow: study run {parent.run_id}: {len(metrics)} held-out metrics and the study's files logged",
          flush=True)


def log_report(study_dir: Path, report: Path) -> None:
    """Add ``report.html`` to the parent run of a study that logged to MLflow (nothing otherwise)."""
    parent = read_parent(study_dir)
    if parent is None:
        return
    import_mlflow()
    try:
        parent.client().log_artifact(parent.run_id, str(report))
    except Exception as err:  # the report is written either way; the tracking server may be gone since
        print(f"warning: mlflow: the report was not logged to run {parent.run_id} at {parent.tracking_uri}: "
              f"{str(err).splitlines()[0][:200]}", file=sys.stderr)
        return
    print(f"mlflow: report logged to study run {parent.run_id}")


def _numbers(row: dict[str, Any], prefix: tuple[str, ...]) -> list[Any]:
    """The finite numbers of a row as MLflow metrics named ``prefix/column``."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(metric_key(*prefix, str(k)), float(v), now, 0) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
