"""One frozen, typed configuration for one trial.

The flat dict (``{"balancer.alpha": 1.5, "model.size": "n", ...}``) is what Optuna suggests, what
Ray Tune hands a trial, and what lands as columns of a Parquet row. ``TrialConfig.from_flat`` is
strict: a missing or unknown key is an error, never a silent default, so a typo in a search space
fails at once instead of studying the default for hours. ``TrialConfig.from_partial`` is the
lenient door for humans (CLI flags, tests): every key it is given must exist, missing ones take
their defaults.

The balancer section holds ``balancer.name`` and that balancer's own hyperparameters only, as the
strategy declares them (``Balancer.hparams``, trainables/balancing/): a gradnorm config has
``balancer.alpha``, ``balancer.weight_lr`` and ``balancer.warmup_steps``, an equal config none.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args, get_type_hints

ARCHS = ("shared", "dual", "det_only", "cls_only")
Arch = Literal["shared", "dual", "det_only", "cls_only"]
Precision = Literal["auto", "fp32", "bf16"]  # train.precision (trainables/precision.py)
MemoryFormat = Literal["auto", "channels_last", "contiguous"]  # train.memory_format
# The dual model's view classifiers: each name here is built by trainables/models/dual.py: build_classifier;
# the config checks a name before anything is built, and the tests run every one (tests/test_models.py)
ClassifierBackbone = Literal["yolo", "resnet18", "mobilenet_v3_small"]
CLASSIFIER_BACKBONES: tuple[str, ...] = get_args(ClassifierBackbone)


class ConfigError(ValueError):
    """A configuration that cannot be trained; the message is one line meant for the user."""


@dataclass(frozen=True)
class ModelConfig:
    size: Literal["n", "s", "custom"] = "n"
    depth_multiple: float = 0.33  # used when size == "custom"
    width_multiple: float = 0.25  # used when size == "custom"
    cls_hidden: int = 0  # 0: linear view head; else one hidden layer of this width
    cls_dropout: float = 0.0
    # which backbone level the view head pools; p4 by default: on the synthetic default a view head on
    # P4 learns within a short trial, one on P5 (after SPPF) stays near chance (docs/benchmarks.md#view-head-level)
    cls_level: Literal["p3", "p4", "p5"] = "p4"
    # the view head average-pools its level to a grid x grid layout (1 = global average pooling): a view is
    # a layout of chambers, which a grid keeps and GAP throws away (trainables/models/multitask.py: ViewHead;
    # measured: docs/benchmarks.md#view-head-grid)
    cls_grid: int = 4
    # dual only: the classifier's own network
    cls_backbone: ClassifierBackbone = "yolo"
    cls_width_multiple: float = 0.25  # width of the dual classifier's YOLO backbone
    # shared only: how many backbone units (stem, stage2, stage3 = P3, stage4 = P4, stage5, SPPF = P5) both
    # tasks share, 0..L with L the units up to cls_level (p3: 3, p4: 4, p5: 6); the view task has its own copy
    # of the units after the split (trainables/models/multitask.py). -1: L, the fully shared model (so a
    # default config, and a stored one written before this key, is today's shared model whatever cls_level)
    shared_stages: int = -1
    # initial weights: an absolute path to a checkpoint of this tool, a plain state_dict or a torchvision
    # weights file, matched by name and shape (trainables/models/transfer.py); "" trains from scratch
    weights: str = ""


@dataclass(frozen=True)
class BalancerConfig:
    """``name`` (a registered balancer or a ``package.module:ClassName`` plugin) and the values of the
    hyperparameters that balancer declares, in its order; read one as ``cfg.balancer.alpha``.

    Built from ``values`` as given: a declared key left out takes its default, any other key is a
    ConfigError naming the balancer's keys. Ranges are checked by ``validate``."""

    name: str = "equal"
    values: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        declared = balancer_hparams(self.name)
        given = dict(self.values)
        bad = sorted(set(given) - {h.name for h in declared})
        if bad:
            raise ConfigError(_foreign_message(self.name, [f"balancer.{k}" for k in bad], declared))
        values = tuple((h.name, _coerce(h.key, given.get(h.name, h.default), h.type)) for h in declared)
        object.__setattr__(self, "values", values)

    def __getattr__(self, key: str) -> Any:
        if not key.startswith("__"):
            for name, value in object.__getattribute__(self, "values"):
                if name == key:
                    return value
        raise AttributeError(f"balancer {object.__getattribute__(self, 'name')!r} has no hyperparameter {key!r}")

    @property
    def hparams(self) -> dict[str, Any]:
        """``{"alpha": 1.5, ...}``: what the registry builds the strategy with."""
        return dict(self.values)


@dataclass(frozen=True)
class OptimConfig:
    # AdamW by default: from scratch and in a study's short trials it learns both tasks of the
    # synthetic default faster than YOLOv5's SGD recipe (lr 0.01, momentum 0.937), which is tuned
    # for 300-epoch runs (docs/benchmarks.md#adamw-vs-sgd). SGD stays a choice (optim.name=sgd, lr ~0.01).
    name: Literal["sgd", "adamw"] = "adamw"
    lr: float = 0.001  # the (shared / detector) network
    # the rate of what only the view task trains: the shared model's view head, dual's whole classifier network,
    # cls_only's whole network (trainables/learner.py: one rule). A linear head over a 4x4 grid of features moves
    # its logits far faster per step than the trunk, and at a detector's rate it overshoots (view loss above
    # ln 3) and balancers starve it
    cls_lr: float = 0.001
    momentum: float = 0.937  # SGD momentum, or AdamW's beta1
    weight_decay: float = 0.01  # decoupled (AdamW); for SGD use ~5e-4. Never applied to norms or biases
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "linear"] = "cosine"
    final_lr_ratio: float = 0.01
    ema: bool = False
    ema_decay: float = 0.9999
    grad_clip: float = 10.0  # max global grad norm; 0 disables


@dataclass(frozen=True)
class LossConfig:
    anchor_t: float = 4.0
    box_gain: float = 0.05
    obj_gain: float = 1.0
    cls_gain: float = 0.5
    # "yolov5": the gains above are rescaled as YOLOv5's train.py does (box x 3/nl, cls x nc/80 x 3/nl,
    # obj x (imgsz/640)^2 x 3/nl), so the detection loss keeps YOLOv5's scale at any class count and image
    # size; unscaled ("none") it is several times larger at few classes and small images and dominated by
    # its class term (docs/benchmarks.md#loss-gain-scaling), which skews every balancer. "none" keeps the
    # old behaviour for comparison.
    gain_scaling: Literal["yolov5", "none"] = "yolov5"
    view_smoothing: float = 0.0
    view_class_weights: bool = False  # inverse-frequency weights for the view cross-entropy


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # "synthetic" or an absolute path to a data.yaml
    imgsz: int = 128
    batch: int = 16
    split: Literal["folders", "patient"] = "folders"
    val_fraction: float = 0.2  # patient split only
    test_fraction: float = 0.2  # patient split only (without folds)
    # patient split only: K >= 2 outer patient folds (trainables/data/folds.py), ``fold`` the one held out as the
    # test split; the other folds' patients are dealt into round(1 / val_fraction) inner folds (at least 2) and one
    # validates (0.3: 1/3 of them, 0.4: 1/2; trainables/data/folds.py). 0: no folds
    folds: int = 0
    fold: int = 0
    # what decides the split, carried by every trial's config so a checkpoint knows its own patients (study.evaluate
    # rebuilds the split from these alone): the seed of the patient split and of the synthetic frames (-1: not
    # recorded, a config from before: the run's train.seed, or its study's seed), and a fingerprint of the test
    # split's patients (trainables/data/splits.py: ``patients_fingerprint``; "": not recorded)
    split_seed: int = -1
    test_patients: str = ""
    group_regex: str = r"^([^-]+)-"  # first capture group is the patient id
    missing_view: Literal["skip", "error"] = "skip"
    # 512 / 128: a 5-epoch trial of the default study takes 160 steps, enough for both tasks to start
    # learning where 256 (80 steps) was not (docs/benchmarks.md#synthetic-default-size), and scores the
    # view on 128 frames, not 64
    synthetic_train: int = 512
    synthetic_val: int = 128
    synthetic_test: int = 64
    augment: bool = True
    hsv_h: float = 0.015
    hsv_s: float = 0.5
    hsv_v: float = 0.3
    scale: float = 0.3
    translate: float = 0.1
    fliplr: float = 0.0  # echo anatomy is not mirror-symmetric
    # 4-frame mosaics of same-view frames (trainables/data/mosaic.py), off for the last close_mosaic epochs
    # (so the model ends on whole frames, as it will see them). Off by default: on the synthetic default it
    # measured no better than plain augmentation (docs/benchmarks.md#mosaic)
    mosaic: bool = False
    close_mosaic: int = 10


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    # bf16 autocast where the hardware runs it natively, channels-last memory: trainables/precision.py says how
    # ``auto`` resolves (on this project's CPUs, bf16 + channels-last: docs/benchmarks.md#bf16-and-channels-last)
    precision: Precision = "auto"
    memory_format: MemoryFormat = "auto"
    interference_batches: int = 2  # fixed training batches for the gradient-cosine measurement
    bn_recalibration_batches: int = 8  # re-estimate BatchNorm statistics before validating (0: off)
    max_det: int = 300
    conf_thres: float = 0.001
    iou_thres: float = 0.6


@dataclass(frozen=True)
class TrialConfig:
    arch: Arch = "shared"
    model: ModelConfig = field(default_factory=ModelConfig)
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)

    # ---- flat dict <-> dataclass -------------------------------------------------------------
    def to_flat(self) -> dict[str, Any]:
        """``{"arch": ..., "model.size": ..., ...}``: one entry per leaf, in a stable order; of the
        balancer hyperparameters only the named balancer's."""
        flat: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, BalancerConfig):
                flat[f"{f.name}.name"] = value.name
                flat.update({f"{f.name}.{k}": v for k, v in value.values})
            elif dataclasses.is_dataclass(value):
                for sub in fields(value):
                    flat[f"{f.name}.{sub.name}"] = getattr(value, sub.name)
            else:
                flat[f.name] = value
        return flat

    @classmethod
    def flat_keys(cls, balancer: str | None = None) -> list[str]:
        """Every config key, in order: with ``balancer``, that balancer's hyperparameters; without,
        those of every registered balancer (each once; the columns a study's trials can have)."""
        common = list(cls().to_flat())  # the default balancer (equal) has no hyperparameters
        if balancer is not None:
            own = [h.key for h in balancer_hparams(balancer)]
        else:
            from trainables.balancing.registry import available

            own = list(dict.fromkeys(h.key for name in available() for h in balancer_hparams(name)))
        at = common.index("balancer.name") + 1
        return common[:at] + own + common[at:]

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> TrialConfig:
        """Strict: every key of :meth:`flat_keys` of the named balancer must be present and no other.

        Two kinds of extra keys are accepted and ignored, because stored configs carry them: the
        hyperparameters of other registered balancers (checkpoints and Tune configs written before
        each balancer owned its keys carried every balancer's; a row of a mixed-method trials.parquet
        carries the union of its methods' columns, NaN where a method has no such key), and the
        retired ``train.fail`` at its inert value. Keys added since (``_ADDED``: ``model.shared_stages``,
        ``data.folds``, ``data.fold``, ``data.split_seed``, ``data.test_patients``, ``train.memory_format``) may be
        missing: they take the value that means what the stored config meant; ``train.amp`` is read as the
        ``train.precision`` it became."""
        flat = _fill_added(_drop_retired(_drop_foreign(flat)))
        name = flat.get("balancer.name")
        expected = set(cls.flat_keys(name if name is not None else "equal"))
        missing = sorted(expected - set(flat))
        unknown = sorted(set(flat) - expected)
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unknown:
                parts.append(f"unknown keys {unknown}")
            raise ConfigError("config: " + "; ".join(parts) + f" (valid keys: {sorted(expected)})")
        return cls._build(flat)

    @classmethod
    def from_partial(cls, flat: dict[str, Any]) -> TrialConfig:
        """Lenient about missing keys (they take defaults), strict about unknown ones: a balancer key
        must be one of the named balancer's (``balancer.name``, ``equal`` if not given)."""
        common = set(cls().to_flat())
        unknown = sorted(k for k in set(flat) - common if not _is_balancer_key(k))
        if unknown:
            raise ConfigError(f"config: unknown keys {unknown} (valid keys: {cls.flat_keys()})")
        name = flat.get("balancer.name", BalancerConfig.name)
        declared = balancer_hparams(name)
        foreign = sorted(k for k in set(flat) - common if k not in {h.key for h in declared})
        if foreign:
            raise ConfigError(_foreign_message(name, foreign, declared))
        full = cls().to_flat()
        full.update(flat)
        return cls._build(full)

    def replace(self, **flat: Any) -> TrialConfig:
        """A copy with some flat keys changed: ``cfg.replace(**{"train.epochs": 3})``. A new
        ``balancer.name`` starts from that balancer's defaults."""
        full = self.to_flat()
        if flat.get("balancer.name", self.balancer.name) != self.balancer.name:
            full = {k: v for k, v in full.items() if not _is_balancer_key(k)}
        return self.from_partial({**full, **flat})

    @classmethod
    def _build(cls, flat: dict[str, Any]) -> TrialConfig:
        sections: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        hints = get_type_hints(cls)
        for key, value in flat.items():
            if "." in key:
                section, name = key.split(".", 1)
                sections.setdefault(section, {})[name] = value
            else:
                top[key] = _coerce(key, value, hints[key])
        for section, values in sections.items():
            section_cls = hints[section]
            if section_cls is BalancerConfig:  # coerced to each hyperparameter's declared type
                name = _coerce("balancer.name", values.pop("name", BalancerConfig.name), str)
                top[section] = BalancerConfig(name, tuple(values.items()))
                continue
            sub_hints = get_type_hints(section_cls)
            coerced = {k: _coerce(f"{section}.{k}", v, sub_hints[k]) for k, v in values.items()}
            top[section] = section_cls(**coerced)
        return cls(**top)


def balancer_hparams(name: str) -> tuple[Any, ...]:
    """The ``Hparam``s balancer ``name`` declares; a ConfigError for a name that is no balancer."""
    from trainables.balancing.registry import UnknownBalancer, hparams_of  # late: the registry imports torch

    try:
        return hparams_of(name)
    except UnknownBalancer as err:
        raise ConfigError(f"config: {err}") from None


def fit_balancer(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` made to fit its ``balancer.name``: other registered balancers' keys dropped, the named
    one's missing hyperparameters at their defaults (unknown keys stay, for the config to refuse).

    For a flat dict assembled from parts (a study's base config under a search space's method)."""
    out = _drop_foreign(flat)
    for h in balancer_hparams(out.get("balancer.name", BalancerConfig.name)):
        out.setdefault(h.key, h.default)
    return out


def _is_balancer_key(key: str) -> bool:
    return key.startswith("balancer.") and key != "balancer.name"


def _drop_foreign(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` without the hyperparameter keys that only other registered balancers declare."""
    from trainables.balancing.registry import owners

    name = flat.get("balancer.name", BalancerConfig.name)
    own = {h.key for h in balancer_hparams(name)} if isinstance(name, str) else set()
    known = {f"balancer.{k}" for k in owners()}
    return {k: v for k, v in flat.items() if not (_is_balancer_key(k) and k in known and k not in own)}


# Keys added after configs were first stored (checkpoints, Tune configs, trials.parquet rows), with the value that
# means what such a config meant: a stored config without the key is read with it.
# train.memory_format: such a run kept PyTorch's default (contiguous) layout.
_ADDED: dict[str, Any] = {"model.shared_stages": -1, "data.folds": 0, "data.fold": 0, "data.split_seed": -1,
                          "data.test_patients": "", "train.memory_format": "contiguous"}


def _fill_added(flat: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in _ADDED.items() if k not in flat}, **_upgrade_amp(flat)}


def _upgrade_amp(flat: dict[str, Any]) -> dict[str, Any]:
    """``train.amp`` (bf16 autocast on CUDA only) became ``train.precision``: true is ``auto``, false ``fp32``.

    A checkpoint of that era is still *run* at the precision it trained at (``precision.checkpoint_numerics``).
    """
    if "train.amp" not in flat:
        return flat
    out = dict(flat)
    amp = _coerce("train.amp", out.pop("train.amp"), bool)
    out.setdefault("train.precision", "auto" if amp else "fp32")
    return out


# Keys a stored config may still carry, with the only value under which dropping them changes nothing.
# train.fail was a test-only fault switch (now fault balancers in tests/faults.py).
_RETIRED = {"train.fail": "none"}


def _drop_retired(flat: dict[str, Any]) -> dict[str, Any]:
    out = dict(flat)
    for key, inert in _RETIRED.items():
        if key in out:
            if out[key] != inert:
                raise ConfigError(f"config: {key}={out[key]!r} is no longer a setting (only {inert!r} can be read)")
            del out[key]
    return out


def _foreign_message(name: str, keys: list[str], declared: tuple[Any, ...]) -> str:
    from trainables.balancing.registry import owners

    whose = owners()
    found = [f"{k} is {'/'.join(whose[k[9:]])}'s" for k in keys if k[9:] in whose]
    valid = [h.key for h in declared]
    return (f"config: unknown keys {keys} for balancer.name={name!r}" + (f" ({'; '.join(found)})" if found else "")
            + f"; its keys: {valid if valid else 'none'}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Turn what Optuna, Parquet or a CLI gives (numpy scalars, ints for floats) into the field's type."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy / torch scalars
    choices = get_args(hint) if getattr(hint, "__origin__", None) is Literal else None
    if choices:
        if value not in choices:
            raise ConfigError(f"config: {key}={value!r} is not one of {list(choices)}")
        return value
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"config: {key}={value!r} is not a valid {hint.__name__}") from None
    return value


def validate(cfg: TrialConfig) -> None:
    """Range checks that the types cannot express; each failure is one line for the user."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(f"config: {message}")

    need(cfg.arch in ARCHS, f"arch={cfg.arch!r} is not one of {list(ARCHS)}")
    for h in balancer_hparams(cfg.balancer.name):  # each balancer's own ranges (BalancerConfig checked the name)
        problem = h.problem(getattr(cfg.balancer, h.name))
        need(problem is None, str(problem))
    need(
        cfg.arch == "shared" or cfg.balancer.name == "equal",
        f"arch={cfg.arch!r} has no shared weights to balance; use balancer.name='equal' "
        "(each network gets its own gradients)",
    )
    need(cfg.data.imgsz >= 32 and cfg.data.imgsz % 32 == 0, f"data.imgsz={cfg.data.imgsz} must be a multiple of 32")
    need(cfg.data.batch >= 1, f"data.batch={cfg.data.batch} must be >= 1")
    need(cfg.data.close_mosaic >= 0, f"data.close_mosaic={cfg.data.close_mosaic} must be >= 0")
    need(0 <= cfg.data.scale < 1, f"data.scale={cfg.data.scale} must be in [0, 1)")
    need(cfg.train.epochs >= 1, f"train.epochs={cfg.train.epochs} must be >= 1")
    for key in ("optim.lr", "optim.cls_lr"):
        value = _get(cfg, key)
        need(math.isfinite(value) and value > 0, f"{key}={value} must be a positive number")
    need(cfg.optim.weight_decay >= 0, f"optim.weight_decay={cfg.optim.weight_decay} must be >= 0")
    need(cfg.train.bn_recalibration_batches >= 0, "train.bn_recalibration_batches must be >= 0")
    need(cfg.model.cls_hidden >= 0, f"model.cls_hidden={cfg.model.cls_hidden} must be >= 0")
    need(1 <= cfg.model.cls_grid <= 8, f"model.cls_grid={cfg.model.cls_grid} must be in [1, 8]")
    need(0 <= cfg.model.cls_dropout < 1, f"model.cls_dropout={cfg.model.cls_dropout} must be in [0, 1)")
    need(cfg.model.width_multiple > 0 and cfg.model.depth_multiple > 0, "model multiples must be > 0")
    units, stages = view_level_units(cfg.model.cls_level), cfg.model.shared_stages
    need(-1 <= stages <= units, f"model.shared_stages={stages} must be in [0, {units}]: the backbone units up to "
         f"the view head's level model.cls_level={cfg.model.cls_level!r} (-1 or leaving it out: all {units})")
    need(cfg.arch == "shared" or stages == -1, f"model.shared_stages={stages} applies to arch='shared' only "
         f"(arch={cfg.arch!r} shares nothing to split); leave it out")
    need(
        0 < cfg.data.val_fraction < 1 and 0 <= cfg.data.test_fraction < 1
        and cfg.data.val_fraction + cfg.data.test_fraction < 1,
        "data.val_fraction + data.test_fraction must leave some training data",
    )
    folds, fold = cfg.data.folds, cfg.data.fold
    need(folds == 0 or folds >= 2, f"data.folds={folds} must be 0 (no folds) or at least 2")
    need(folds == 0 or cfg.data.split == "patient",
         f"data.folds={folds} splits by patient: set data.split=patient (study.run: --split patient)")
    need(0 <= fold < max(folds, 1), f"data.fold={fold} must be in [0, {max(folds, 1) - 1}] (data.folds={folds})")
    need(cfg.data.split_seed >= -1, f"data.split_seed={cfg.data.split_seed} must be >= 0 (-1: not recorded)")


def _get(cfg: TrialConfig, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(cfg, section), name)


def view_level_units(cls_level: str) -> int:
    """How many backbone units produce the view head's level (p3: 3, p4: 4, p5: 6): the most a shared
    model can share (``model.shared_stages``)."""
    from trainables.models.yolo import LEVEL_UNITS  # late: the model imports torch

    return LEVEL_UNITS[("p3", "p4", "p5").index(cls_level)]


def shared_units(model: ModelConfig) -> int:
    """``model.shared_stages`` resolved: -1 (the default) is every unit up to the view head's level."""
    return view_level_units(model.cls_level) if model.shared_stages < 0 else model.shared_stages


def model_multiples(model: ModelConfig) -> tuple[float, float]:
    """(depth_multiple, width_multiple) of a size preset: n = 0.33/0.25, s = 0.33/0.50."""
    presets = {"n": (0.33, 0.25), "s": (0.33, 0.50)}
    return presets.get(model.size, (model.depth_multiple, model.width_multiple))
