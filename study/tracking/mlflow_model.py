"""A study's chosen models in the MLflow model registry (``--mlflow`` with ``--test`` or ``--folds``).

When the study ends (study/tracking/mlflow_study.py: ``finish_parent``), for each method of its held-out
headline with a scored re-run:

1. its chosen model (study/modelcard/choice.py: of a folds study, fold 0's) is exported with its card
   (study/export.py: ``export_with_card``) to ``STUDY/model/<method>/model.onnx``, ``model.card.md`` and
   ``model.card.json`` (``<method>``: its label with ``/`` as ``-``);
2. that folder is logged to the study's parent run as an MLflow model of the ONNX flavor (``MLmodel`` beside
   ``model.onnx``, the card's two files with them) under the artifact path ``model/<method>``;
3. the model is registered as a new version of the registered model ``<experiment>.<method>``
   (``registered_name``; e.g. ``mtl-study.shared-gradnorm``): one registered model per method, whose versions are
   the studies that chose one. The version's tags are its held-out scores (``test.<metric>.mean`` / ``.ci95``:
   the study's estimate of the procedure, every metric headline.parquet has; ``model.test.<metric>``: this
   checkpoint's own), with what it is (``mtl.study``, ``mtl.method``, ``mtl.trial_id``, ``mtl.fold``, the rule,
   the commit and the data's fingerprint).

A ``--resume`` registers (and exports) no second version of a model it registered: the registry is asked first for
a version of the same parent run and checkpoint (its sha256). Every call to the server is guarded like the others
of study/tracking/: a server that stops answering costs one warning (``lose_tracking``) and nothing more is sent;
a model that does not export costs a warning for that method alone; the study's own files are complete either
way.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from study.tracking.mlflow_study import ParentRun, lose_tracking, metric_key, tracking_lost

MODEL_DIR = "model"  # STUDY/model/<method>/ and the parent run's artifact path model/<method>
ONNX_FILE = "model.onnx"  # the ONNX flavor's own file name: the card's sha256 is of these bytes
TAG_LIMIT = 5000  # MLflow's longest tag value


def method_slug(method: str) -> str:
    """A method label as one path part and registry name part: ``shared@2/gradnorm`` -> ``shared@2-gradnorm``."""
    return method.replace("/", "-")


def registered_name(experiment: str, method: str) -> str:
    """The registered model a study's chosen ``method`` is a version of: ``<experiment>.<method slug>`` (MLflow
    refuses ``/`` and ``:`` in a name)."""
    return f"{experiment}.{method_slug(method)}".replace(":", "-").replace("/", "-")


def version_tags(card: dict[str, Any]) -> dict[str, str]:
    """A model version's tags from its card: what it is, and every held-out score (procedure and model)."""
    chosen, held = card.get("chosen") or {}, card.get("heldout") or {}
    procedure, model = held.get("procedure") or {}, held.get("model") or {}
    trained = card["code"].get("trained_with") or [{}]
    tags = {"mtl.study": chosen.get("study"), "mtl.method": card["model"]["method"],
            "mtl.trial_id": chosen.get("trial_id"), "mtl.repeat_of": chosen.get("repeat_of"),
            "mtl.seed": chosen.get("seed"), "mtl.epoch": chosen.get("epoch"), "mtl.fold": chosen.get("fold"),
            "mtl.folds": chosen.get("folds"), "mtl.rule": chosen.get("rule"),
            "mtl.git_commit": trained[-1].get("commit"), "mtl.code": trained[-1].get("code"),
            "mtl.dataset_fingerprint": card["data"].get("fingerprint") or card["code"].get("dataset_fingerprint"),
            "mtl.precision": card["training"]["precision"],
            "mtl.checkpoint_sha256": card["model"]["checkpoint"]["sha256"],
            "mtl.interval_unit": procedure.get("interval_unit"), "mtl.n_folds": procedure.get("n_folds"),
            "mtl.n_runs": procedure.get("n_runs"), "mtl.n_failed": procedure.get("n_failed")}
    for name, stats in (procedure.get("metrics") or {}).items():
        tags[metric_key(f"test.{name}.mean")] = stats["mean"]
        tags[metric_key(f"test.{name}.ci95")] = stats.get("ci95")
    for name, value in (model.get("metrics") or {}).items():
        tags[metric_key(f"model.test.{name}")] = value
    latency = card.get("latency") or {}
    if latency:
        tags["mtl.latency_ms_b1_median"] = latency["median_ms"]
    return {k: _tag(v) for k, v in tags.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def register_chosen(study_dir: Path, parent: ParentRun) -> None:
    """Export, log and register each method's chosen model (the module docstring); nothing without a headline."""
    from study.errors import UsageError
    from study.modelcard.card import sha256
    from study.modelcard.choice import chosen_model, methods_scored

    for method in methods_scored(study_dir):
        if tracking_lost(parent.tracking_uri):
            return
        try:
            chosen = chosen_model(study_dir, method)
        except UsageError as err:  # e.g. no re-run of it finished: nothing to register for this method
            print(f"warning: mlflow: {method} has no chosen model to register: {err}", file=sys.stderr, flush=True)
            continue
        name = registered_name(parent.experiment_name, method)
        try:  # asked before exporting: a --resume exports nothing it registered, a server gone costs no export
            known = _registered_version(parent, name, sha256(chosen.checkpoint))
        except Exception as err:
            lose_tracking(parent.tracking_uri, f"registering {method}'s chosen model", err)
            return
        if known is not None:
            print(f"mlflow: {method}'s chosen model is {name} version {known} already", flush=True)
            continue
        try:
            card, folder = _export(chosen, study_dir / MODEL_DIR / method_slug(method))
        except Exception as err:  # an export that fails is that method's loss, not the study's nor the others'
            print(f"warning: mlflow: {method}'s chosen model was not exported, so not registered: "
                  f"{(str(err).splitlines() or [type(err).__name__])[0][:300]}", file=sys.stderr, flush=True)
            continue
        try:
            _register(parent, name, method, card, folder)
        except Exception as err:
            lose_tracking(parent.tracking_uri, f"registering {method}'s chosen model", err)


def _registered_version(parent: ParentRun, name: str, checkpoint_sha: str) -> str | None:
    """The version of ``name`` this study's run registered from the checkpoint ``checkpoint_sha``, if any."""
    for version in parent.client().search_model_versions(f"name = '{name}' and run_id = '{parent.run_id}'"):
        if version.tags.get("mtl.checkpoint_sha256") == checkpoint_sha:
            return str(version.version)
    return None


def _export(chosen: Any, folder: Path) -> tuple[dict[str, Any], Path]:
    from study.export import export_with_card
    from study.store.checkpoints import load_checkpoint

    result = export_with_card(load_checkpoint(chosen.checkpoint), chosen.checkpoint, folder / ONNX_FILE, chosen)
    if result.card is None:
        raise RuntimeError(f"its ONNX file differs from PyTorch beyond the tolerance ({folder / ONNX_FILE})")
    return result.card, folder


def _register(parent: ParentRun, name: str, method: str, card: dict[str, Any], folder: Path) -> None:
    import mlflow.onnx
    import onnx
    from mlflow.exceptions import MlflowException

    client = parent.client()
    artifact_path = f"{MODEL_DIR}/{method_slug(method)}"
    with tempfile.TemporaryDirectory() as tmp:
        packed = Path(tmp) / "model"
        mlflow.onnx.save_model(onnx.load(str(folder / ONNX_FILE)), str(packed), save_as_external_data=False,
                               onnx_execution_providers=["CPUExecutionProvider"],
                               metadata={"study": card["chosen"]["study"], "method": method})
        # the card's sha256 names the exported bytes: ship those, not MLflow's re-serialisation of them
        shutil.copyfile(folder / ONNX_FILE, packed / ONNX_FILE)
        for card_file in folder.glob("*.card.*"):
            shutil.copyfile(card_file, packed / card_file.name)
        client.log_artifacts(parent.run_id, str(packed), artifact_path)
    try:
        client.create_registered_model(name, description=f"Chosen {method} models of studies in experiment "
                                                         f"{parent.experiment_name!r}; each version is one study's")
    except MlflowException as err:
        if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
            raise
    source = f"{client.get_run(parent.run_id).info.artifact_uri}/{artifact_path}"
    version = client.create_model_version(
        name, source, run_id=parent.run_id, tags=version_tags(card),
        description=f"Study {card['chosen']['study']}'s chosen {method} model; its card: "
                    f"{artifact_path}/model.card.md")
    print(f"mlflow: {method}'s chosen model registered as {name} version {version.version}", flush=True)


def _tag(value: Any) -> str:
    """A tag value: a float in full (``repr``: read back exactly), anything else as text, cut to MLflow's limit."""
    return (repr(float(value)) if isinstance(value, float) else str(value))[:TAG_LIMIT]
