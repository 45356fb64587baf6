"""The card as Markdown (``OUT.card.md``): the JSON document's facts in the order a reader asks for them."""

from __future__ import annotations

import math
from typing import Any

from trainables.metrics.names import label
from trainables.wording import counted


def render(card: dict[str, Any]) -> str:
    """The Markdown page of a card document (card.py: ``build_card``)."""
    model, chosen = card["model"], card.get("chosen")
    title = f"# Model card: {model['method']}" + (f" of study {chosen['study']}" if chosen else "")
    lines = [title, "", f"Written {card['created']} by `python -m study.export` (card format {card['card_format']}).",
             "", "## Intended use", "", card["intended_use"], ""]
    lines += _model(model, card["training"])
    lines += _chosen(chosen)
    lines += _heldout(card)
    lines += _data(card["data"])
    lines += _latency(card.get("latency"), card.get("latency_note", ""))
    lines += ["## Limitations", "", *(f"- {item}" for item in card["limitations"]), ""]
    lines += _code(card["code"])
    lines += ["## Configuration", "", "<details><summary>every key of the trained configuration</summary>", "",
              "| key | value |", "|---|---|", *(f"| `{k}` | `{_cell(v)}` |" for k, v in card["config"].items()), "",
              "</details>", ""]
    return "\n".join(lines)


def _model(model: dict[str, Any], training: dict[str, Any]) -> list[str]:
    onnx, ckpt = model["onnx"], model["checkpoint"]
    balancer = model["balancer"] if model["arch"] == "shared" else "none (no shared weights to balance)"
    split = "" if model["shared_stages"] in (None, -1) else f", shared stages {model['shared_stages']}"
    out = ["## Model", "",
           f"- method `{model['method']}`: architecture `{model['arch']}` (size {model['size']}{split}), balancer "
           f"`{balancer}`, {model['params']:,} parameters",
           f"- trained in **{training['precision']}** ({training['memory_format']}), best epoch "
           f"{training['epoch']}{', EMA weights' if training['ema_weights'] else ''}",
           f"- input: {model['input']}", f"- outputs: {', '.join(f'`{o}`' for o in model['outputs'])}"]
    if model["finish"]:
        thresholds = ", ".join(f"{k} {v}" for k, v in model["thresholds"].items())
        out.append(f"- finish the candidates as training scored them: {model['finish']} (trained with {thresholds})")
    out.append(f"- ONNX `{onnx['file']}`: {onnx['bytes'] / 2**20:.1f} MiB, sha256 `{onnx['sha256']}`")
    if onnx.get("check"):
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in onnx["check"]["max_abs_diff"].items())
        out.append(f"  - checked against PyTorch on {onnx['check']['images']} images: max |ONNX - PyTorch| {diffs} "
                   f"(tolerance {onnx['check']['atol']:g} + {onnx['check']['rtol']:g} x |y|)")
    out += [f"- checkpoint `{ckpt['file']}`: epoch {ckpt['epoch']}, sha256 `{ckpt['sha256']}`", ""]
    return out


def _chosen(chosen: dict[str, Any] | None) -> list[str]:
    if chosen is None:
        return ["## Which model", "", "A checkpoint exported by itself (not chosen from a study by `--best`).", ""]
    fold = f", fold {chosen['fold']} of {chosen['folds']}" if chosen["folds"] else ""
    return ["## Which model", "",
            f"Study `{chosen['study']}`, method `{chosen['method']}`: re-run `{chosen['trial_id']}` of configuration "
            f"`{chosen['repeat_of'] or chosen['trial_id']}` (seed {chosen['seed']}, epoch {chosen['epoch']}{fold}).",
            "", f"Rule: {chosen['rule']}.", ""]


def _heldout(card: dict[str, Any]) -> list[str]:
    held = card.get("heldout")
    if not held:
        return ["## Held-out scores", "", card.get("heldout_note") or "none", ""]
    procedure, model = held.get("procedure") or {}, held.get("model") or {}
    unit = procedure.get("interval_unit")
    if unit == "fold":
        what = (f"**the procedure** that made this model, estimated over {procedure.get('n_folds')} folds of "
                f"patients it never saw (mean over folds of the mean over "
                f"{counted(procedure.get('n_seeds') or 0, 'seed')}; 95% CI "
                f"over folds, {procedure.get('interval_correction')} correction)")
        mine = f"this fold's model on fold {model.get('fold')}'s {model.get('images')} test frames" if model else ""
    elif procedure:
        what = (f"**the procedure** over {procedure.get('n_runs')} re-runs on one test split (95% CI over seeds: "
                "training randomness only)")
        mine = f"this model on the {model.get('images')} test frames" if model else ""
    else:
        what, mine = "", f"this model on the {model.get('images')} test frames"
    out = ["## Held-out scores", ""]
    if what:
        failed = procedure.get("n_failed") or 0
        failures = f"; {counted(failed, 're-run')} FAILED" if failed else ""
        out += [f"Column 1: {what}{failures}. "
                f"Column 2: {mine or 'not recorded'}. Split by {procedure.get('split_by', 'the study')}; "
                "no test score chose anything.", ""]
    else:
        out += [f"{mine} (no study headline attached).", ""]
    names = list(dict.fromkeys([*(procedure.get("metrics") or {}), *(model.get("metrics") or {})]))
    out += ["| metric | key | procedure: mean ± 95% CI | this model |", "|---|---|---|---|"]
    for name in names:
        pooled = (procedure.get("metrics") or {}).get(name)
        shown = "—" if pooled is None else _num(pooled["mean"]) + (
            f" ± {_num(pooled['ci95'])}" if pooled.get("ci95") is not None else "")
        own = (model.get("metrics") or {}).get(name)
        out.append(f"| {label(f'val.{name}').removeprefix('val.')} | `test.{name}` | {shown} | "
                   f"{'—' if own is None else _num(own)} |")
    return [*out, ""]


def _data(data: dict[str, Any]) -> list[str]:
    split = data["split"]
    out = ["## Training data", "", f"- source `{data['source']}`, frames at {data['imgsz']} px; detection classes "
           f"{', '.join(data['classes']) or 'none'}; views {', '.join(data['views']) or 'none'}",
           f"- split: {split['rule']}" + (f"; test patients' fingerprint `{split['test_patients']}`"
                                          if split["test_patients"] else "")]
    if not data.get("available"):
        return [*out, f"- not read here: {data.get('reason')}", ""]
    keys = ", ".join(f"`{k}` ({n} frames)" for k, n in data["pseudonym_keys"].items()) or "none recorded"
    key_word = "pseudonym key" if len(data["pseudonym_keys"]) == 1 else "pseudonym keys"
    out += [f"- data fingerprint `{data['fingerprint']}`; {key_word} {keys}", "",
            "| split | patients | frames | frames per view | boxes per class (frames) |", "|---|---|---|---|---|"]
    for name, s in data["splits"].items():
        views = ", ".join(f"{k} {v}" for k, v in s["frames_per_view"].items())
        boxes = ", ".join(f"{k} {v} ({s['frames_with_class'][k]})" for k, v in s["boxes_per_class"].items())
        out.append(f"| {name} | {s['patients']} | {s['frames']} | {views} | {boxes} |")
    return [*out, ""]


def _latency(latency: dict[str, Any] | None, note: str) -> list[str]:
    if latency is None:
        return ["## Latency", "", f"Not measured: {note or 'unknown'}.", ""]
    return ["## Latency", "",
            f"Batch 1 at {latency['imgsz']} px through {latency['runtime']} ({latency['provider']}, intra-op threads "
            f"{latency['intra_op_threads']}) on {latency['cpu']} ({latency['logical_cpus']} logical CPUs): median "
            f"**{latency['median_ms']:.2f} ms**, quartiles {latency['p25_ms']:.2f}–{latency['p75_ms']:.2f} ms, range "
            f"{latency['min_ms']:.2f}–{latency['max_ms']:.2f} ms over {latency['repeats']} calls after "
            f"{latency['warmup']} warm-up calls, measured by the export on this machine at its load then.", ""]


def _code(code: dict[str, Any]) -> list[str]:
    trained = "; ".join(s["described"] for s in code.get("trained_with", [])) or "not recorded (no study manifest)"
    return ["## Code", "", f"- trained by: {trained}", f"- exported by: {code['exported_with']['described']}", ""]


def _num(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"


def _cell(value: object) -> str:
    """A value inside a Markdown table cell: a ``|`` would end the cell."""
    return str(value).replace("|", "\\|")
