"""Study files: loading and validating the TOML, expanding a study into runs, and the run id.

A study is read once into frozen dataclasses. Every problem in the file is collected and reported together,
each line naming the file, the field, the value and what is allowed. No torch here: a study can be checked
anywhere, and `classaudit status` stays fast. The module is longer than 500 lines because every section's fields,
their checks and their messages are here, so the rules of a study file are read in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classaudit.errors import UsageError, did_you_mean
from classaudit.regularizers import REGULARIZERS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DESIGNS = ("one_at_a_time", "factorial")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
TTA_MODES = ("none", "flip", "flip_translate")  # test-time augmentation: logits averaged over the views
TORCHVISION_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn")
BUILTIN_MODELS = ("smallcnn", "airbench", "cifar_resnet18")
# Names end up in folder names and reports: keep them to characters that are safe everywhere.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_ALLOWED = "1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
CLASSES_ALLOWED = "a list of at least 2 distinct class ids (0, 1, ...) or class names"


# ----------------------------------------------------------------------------------------------------------
# Field specifications: one small table per section, so the rules are readable in one place.


# The default of a field added after runs were stored: left out of the study when not given, so the resolved
# config, and with it every existing run id, stays what it was.
ABSENT = "<absent>"


@dataclass(frozen=True)
class Spec:
    kind: type | tuple[type, ...]
    default: Any = None  # None means required; ABSENT means optional and left out when not given
    check: Callable[[Any], bool] | None = None
    allowed: str = ""


def _int(low: int, high: int | None = None, default: Any = None) -> Spec:
    text = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    return Spec(int, default, lambda v: v >= low and (high is None or v <= high), text)


def _float(low: float, high: float, default: Any = None, low_open: bool = False, high_open: bool = False) -> Spec:
    left, right = ("<" if low_open else "<="), ("<" if high_open else "<=")
    text = f"a number with {low:g} {left} x {right} {high:g}"

    def ok(v: float) -> bool:
        return (
            math.isfinite(v)
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        )

    return Spec((int, float), default, ok, text)


def _choice(choices: tuple[str, ...], default: Any = None) -> Spec:
    return Spec(str, default, lambda v: v in choices, "one of " + ", ".join(f'"{c}"' for c in choices))


def _name(default: Any = None) -> Spec:
    return Spec(str, default, lambda v: bool(NAME_PATTERN.match(v)), NAME_ALLOWED)


BOOL = Spec(bool, False, None, "true or false")

STUDY_FIELDS = {
    "name": _name(),
    "description": Spec(str, ""),
    "seeds": Spec((list, int), None, None, "a list of distinct integers >= 0, or a count n meaning 0..n-1"),
    "design": _choice(DESIGNS, "one_at_a_time"),
    "max_runs": _int(1, default=500),
}
DATASET_FIELDS = {
    "name": Spec(str),
    "val_fraction": _float(0.0, 0.9, 0.1),
    "split_seed": _int(0, default=0),
    # Data-limited training: a stratified subset of the training images left after the validation split, which
    # then may have its own size. Both are drawn with split_seed (data.split_train_val).
    "n_train_per_class": _int(1, default=ABSENT),
    "n_val_per_class": _int(1, default=ABSENT),
    # A subset of the data set's classes, by id or name, in the order given (they become classes 0..k-1); e.g. a
    # transfer study pre-trains on some of a data set's classes and probes on the others.
    "classes": Spec(list, ABSENT, lambda v: len(v) >= 2 and all(isinstance(c, (str, int)) and not isinstance(c, bool)
                                                              for c in v), CLASSES_ALLOWED),
    "options": Spec(dict, {}),
}
DATASET_OPTIONS: dict[str, dict[str, Spec]] = {
    "shapes": {
        "n_train_per_class": _int(2, default=500),
        "n_test_per_class": _int(1, default=200),
        "size": _int(16, 128, 32),
        "seed": _int(0, default=0),
    },
    "shapes_downstream": {  # the downstream classes of the shapes transfer known answer (classaudit.shapes)
        "n_train_per_class": _int(2, default=200),
        "n_test_per_class": _int(1, default=200),
        "size": _int(16, 128, 32),
        "seed": _int(0, default=0),
    },
    "imagefolder": {
        "root": Spec(str, None, None, "a folder holding train/<class>/ and test/<class>/"),
        "size": _int(0, 1024, 0),  # 0: keep the images' own size (all must match)
    },
    **{name: {} for name in TORCHVISION_DATASETS},
}
MODEL_FIELDS = {"name": Spec(str), "options": Spec(dict, {})}
MODEL_OPTIONS: dict[str, dict[str, Spec]] = {
    "smallcnn": {"width": _int(1, 1024, 64)},
    "cifar_resnet18": {"width": _int(1, 1024, 64)},
    "airbench": {"width": _int(1, 1024, 64)},
    "torchvision": {"pretrained": BOOL, "freeze_backbone": BOOL},
}
TRAIN_FIELDS = {
    "epochs": _int(1, default=10),
    "finetune_epochs": _int(0, default=0),
    "batch_size": _int(1, default=256),
    "eval_batch_size": _int(1, default=1024),
    "optimizer": _choice(OPTIMIZERS, "sgd"),
    "lr": _float(0.0, 100.0, 0.1, low_open=True),
    "momentum": _float(0.0, 1.0, 0.9, high_open=True),
    "nesterov": Spec(bool, True, None, "true or false"),
    "schedule": _choice(SCHEDULES, "onecycle"),
    "warmup_fraction": _float(0.0, 1.0, 0.25, high_open=True),
    "flip": Spec(bool, True, None, "true or false"),
    "decay_norm_and_bias": BOOL,
    "tta": _choice(TTA_MODES, "none"),
}
# A study whose runs are trained by the user's own code names it in [train] (classaudit.external runs it). Its
# time limit is not part of the run's config: how long the code may take does not change what it trains.
FUNCTION_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
EXTERNAL_TRAIN_FIELDS = {
    "command": Spec(list, ABSENT, lambda v: bool(v) and all(isinstance(a, str) and a for a in v),
                    'a non-empty list of non-empty strings: the program and its arguments, e.g. ["python", '
                    '"train.py", "--seed", "{seed}"]'),
    "function": Spec(str, ABSENT, lambda v: bool(FUNCTION_PATTERN.match(v)), 'text "package.module:function"'),
    "time_limit": _float(0.0, 1e6, ABSENT, low_open=True),  # minutes
    "epochs": _int(1, default=ABSENT),  # recorded, the {epochs} placeholder, and the off point of an epochs axis
}
# With the user's own code, [dataset] and [model] only describe what it trains: recorded in each run's config.
DESCRIPTION_FIELDS = {"name": Spec(str, ABSENT), "options": Spec(dict, ABSENT)}
AXIS_FIELDS = {
    "regularizer": Spec(str, ""),  # "" means: the axis' own name
    "strengths": Spec(list, None, None, "a non-empty list of numbers"),
    "start_epoch": _int(0, default=0),
    # Class-conditional remedies, at the axis' strengths other than off (the off point stays the shared run):
    # classes the regularizer leaves alone, classes with their own strength, and class weights on the loss.
    "exempt": Spec(list, ABSENT, lambda v: bool(v) and all(isinstance(c, str) and c for c in v),
                   'a non-empty list of class names, e.g. ["cat", "dog"]'),
    "class_strength": Spec(dict, ABSENT, lambda v: bool(v), "a table of class name = strength, e.g. {cat = 1.0}"),
    "class_weights": Spec((str, dict), ABSENT, lambda v: v == "clam" or (isinstance(v, dict) and bool(v)),
                          '"clam" (adaptive: weights from each class\'s training accuracy) or a table of class '
                          'name = weight > 0, e.g. {cat = 2.0}'),
}
CLASS_WEIGHTS_ALLOWED = "a number > 0 (the class's weight on the loss; classes not named weigh 1)"
TOP_LEVEL = ("study", "dataset", "model", "train", "baseline", "sweep", "transfer")


# ----------------------------------------------------------------------------------------------------------
# The validated study.


@dataclass(frozen=True)
class Axis:
    """One line of the sweep: a regularizer at several strengths, switched on at `start_epoch`."""

    name: str
    regularizer: str
    strengths: tuple[float, ...]  # sorted from off outwards; always contains the off value
    start_epoch: int
    off: float  # the regularizer's off value in this study
    class_strength: tuple[tuple[str, float], ...] = ()  # (class, its own strength); exempt classes at off
    class_weights: Any = None  # "clam", ((class, weight), ...), or None

    def remedy(self, strength: float) -> dict[str, Any]:
        """What the axis adds to a run at `strength` beyond the regularizer's strength: nothing at off."""
        if strength == self.off:
            return {}
        out: dict[str, Any] = {}
        if self.class_strength:
            out["class_strength"] = dict(self.class_strength)
        if self.class_weights:
            out["class_weights"] = (self.class_weights if isinstance(self.class_weights, str)
                                    else dict(self.class_weights))
        return out


@dataclass(frozen=True)
class Study:
    path: str
    name: str
    description: str
    seeds: Sequence[int]  # a range when the file gives a count
    design: str
    max_runs: int
    dataset: Mapping[str, Any]
    model: Mapping[str, Any]
    train: Mapping[str, Any]
    baseline: Mapping[str, float]
    axes: tuple[Axis, ...]
    # The downstream task each run is probed on after it trains (the [transfer] table), resolved; None without
    # one. Not part of any run's config: see resolve_transfer.
    transfer: Mapping[str, Any] | None = None

    @property
    def external(self) -> str | None:
        """"command" or "function" when the user's own code trains the runs, None for classaudit's training."""
        return next((key for key in ("command", "function") if key in self.train), None)


@dataclass(frozen=True)
class Point:
    """Where a run sits in the study: on axis `axis`, at `strength`; `is_off` marks the axis' reference."""

    axis: str
    regularizer: str
    strength: float
    is_off: bool


@dataclass(frozen=True)
class Run:
    """One training job. `config` is everything that determines the result; `run_id` is its hash."""

    run_id: str
    seed: int
    config: Mapping[str, Any]
    points: tuple[Point, ...]
    label: str = ""  # what differs from the baseline, e.g. "crop=0.08 seed=2"


# ----------------------------------------------------------------------------------------------------------
# Loading.


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """Read and validate a study file, with `KEY=VALUE` overrides (e.g. "train.epochs=8") applied first.
    Raises UsageError listing every problem found."""
    path = Path(path)
    shown = str(path)
    if not path.exists():
        raise UsageError(f"{shown}: no such study file")
    if path.is_dir():
        raise UsageError(f"{shown}: is a folder; expected a study .toml file")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UsageError(f"{shown}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{shown}: not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"{shown}: cannot be read: {e.strerror}") from None
    try:
        return parse_study(apply_overrides(raw, overrides), shown)
    except UsageError as e:
        raise UsageError(_blame_overrides(str(e), shown, overrides)) from None


def _blame_overrides(message: str, shown: str, overrides: list[str] | tuple[str, ...]) -> str:
    """The problems with each one about a field an override set (or created, misspelt) named after the option,
    not the file."""
    keys = {item.partition("=")[0].strip(): item.strip() for item in overrides}
    lines = []
    for line in message.splitlines():
        found = re.match(rf"{re.escape(shown)}: field '([^']*)'", line)
        field = found.group(1) if found else "\0"  # a line about no field matches no key
        blamed = [key for key in sorted(keys, key=len, reverse=True)
                  if field == key or field.startswith((f"{key}.", f"{key}[")) or key.startswith(f"{field}.")]
        lines.append(f"option --set {keys[blamed[0]]} (over {shown}):" + line[len(shown) + 1:] if blamed else line)
    return "\n".join(lines)


def apply_overrides(raw: Mapping[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of the parsed study with each "dotted.key=value" set; the value is read as TOML (8, 0.5, true,
    [1, 2], "text"), or taken as a plain string when it is not TOML (cifar10). Validation happens after, so an
    override is checked like the file itself."""
    import copy

    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise UsageError(f"option --set: value {_show(item)} is not KEY=VALUE; e.g. --set train.epochs=8")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        table = out
        for i, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise UsageError(f"option --set: {_show(item)}: '{'.'.join(parts[:i + 1])}' is not a table")
        table[parts[-1]] = value
    return out


def parse_study(raw: Mapping[str, Any], path: str = "<study>") -> Study:
    """Validate a study given as a mapping (the parsed TOML)."""
    problems: list[str] = []
    _unknown_keys(raw, TOP_LEVEL, path, "", problems)
    given_train = raw.get("train") if isinstance(raw.get("train"), Mapping) else {}
    external = next((key for key in ("command", "function") if key in given_train), None)
    for required in ("study", "sweep") if external else ("study", "dataset", "model", "sweep"):
        if required not in raw:
            problems.append(f"{path}: field '{required}': missing; add a [{required}] table")
    study = _section(raw, "study", STUDY_FIELDS, path, problems)
    if external:
        dataset = _not_used(raw, "dataset", DATASET_FIELDS, DESCRIPTION_FIELDS, external, path, problems)
        model = _not_used(raw, "model", MODEL_FIELDS, DESCRIPTION_FIELDS, external, path, problems)
        train = _not_used(raw, "train", TRAIN_FIELDS, EXTERNAL_TRAIN_FIELDS, external, path, problems)
        if "command" in train and "function" in train:
            problems.append(f"{path}: field 'train.function': value {_show(train['function'])} is given with "
                            "train.command; give one of them")
        if "time_limit" in train and "command" not in train:
            problems.append(f"{path}: field 'train.time_limit': value {_show(given_train['time_limit'])} is not "
                            "allowed with train.function (it runs inside the worker, which cannot stop it); use "
                            "train.command for a time limit")
    else:
        dataset = _section(raw, "dataset", DATASET_FIELDS, path, problems)
        model = _section(raw, "model", MODEL_FIELDS, path, problems)
        own_code = {k: EXTERNAL_TRAIN_FIELDS[k] for k in ("command", "function", "time_limit")}  # none given
        train = _section(raw, "train", {**TRAIN_FIELDS, **own_code}, path, problems)
        if "time_limit" in train:
            problems.append(f"{path}: field 'train.time_limit': value {_show(given_train['time_limit'])} is only "
                            "for train.command; classaudit's own runs have none (on Slurm: --time-limit)")

    seeds = _seeds(study.get("seeds"), path, problems)
    if dataset.get("n_val_per_class", ABSENT) is not ABSENT:  # given and valid
        given = raw["dataset"]
        if "val_fraction" in given:
            problems.append(f"{path}: field 'dataset.n_val_per_class': value {_show(given['n_val_per_class'])} is "
                            f"given with dataset.val_fraction = {_show(given['val_fraction'])}; give one of them "
                            "(a count of validation images per class, or a fraction of each class)")
        del dataset["val_fraction"]  # the count decides; a default fraction in the run's config would mislead
    if isinstance(dataset.get("name"), str) and not external:
        dataset["options"] = _options(dataset, "dataset", DATASET_OPTIONS, path, problems)
    if isinstance(model.get("name"), str) and not external:
        model["options"] = _model_options(model, path, problems)
    baseline = _baseline(raw.get("baseline", {}), train, path, problems)
    axes = _axes(raw.get("sweep", {}), train, path, problems)
    if external:
        _check_external(path, train, baseline, axes, problems)
    else:
        _check_models(path, model.get("name"), baseline, axes, raw.get("sweep", {}), problems)
        _check_axis_classes(path, dataset, raw.get("sweep"), problems)
    if study.get("design") == "factorial":
        regs = [a.regularizer for a in axes]
        for reg in sorted({r for r in regs if regs.count(r) > 1}):
            problems.append(f"{path}: field 'sweep': regularizer \"{reg}\" appears on several axes; "
                            "a factorial design needs each regularizer on one axis")
    if not external:  # the user's code has no start epochs (_check_external)
        _check_start_epochs(path, axes, train, study.get("design"), problems)
    if isinstance(dataset.get("classes"), list) and isinstance(dataset.get("name"), str):
        _check_classes(dataset, "dataset", path, problems)
    transfer = _transfer(raw, external, path, problems) if "transfer" in raw else None
    _raise(problems)
    result = Study(
        path=path, name=study["name"], description=study["description"], seeds=seeds, design=study["design"],
        max_runs=study["max_runs"], dataset=_frozen(dataset), model=_frozen(model), train=_frozen(train),
        baseline=_frozen(baseline), axes=axes, transfer=None if transfer is None else _frozen(transfer),
    )
    return result


def _raise(problems: list[str]) -> None:
    if problems:
        raise UsageError("\n".join(problems))


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view: a study is a value, and nobody downstream may change it."""
    from types import MappingProxyType

    return MappingProxyType({k: _frozen(v) if isinstance(v, dict) else v for k, v in d.items()})


def _thaw(d: Any) -> Any:
    return {k: _thaw(v) for k, v in d.items()} if isinstance(d, Mapping) else d


def _unknown_keys(table: Mapping[str, Any], allowed, path: str, prefix: str, problems: list[str]) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}{key}"
            listed = ", ".join(sorted(allowed)) or "none"
            problems.append(f"{path}: field '{where}': unknown key{did_you_mean(key, allowed)}; allowed: {listed}")


def _check_value(spec: Spec, value: Any, where: str, problems: list[str]) -> Any:
    # bool is an int in Python; a `true` where a number belongs is a mistake, not 1.
    wrong_type = not isinstance(value, spec.kind) or (isinstance(value, bool) and spec.kind is not bool
                                                      and bool not in (spec.kind if isinstance(spec.kind, tuple)
                                                                       else (spec.kind,)))
    if wrong_type:
        problems.append(f"{where}: value {_show(value)} has the wrong type; expected {_kind_text(spec)}")
        return spec.default
    if spec.check is not None and not spec.check(value):
        problems.append(f"{where}: value {_show(value)} is not allowed; expected {spec.allowed}")
        return spec.default
    return float(value) if spec.kind == (int, float) else value


def _kind_text(spec: Spec) -> str:
    if spec.allowed:
        return spec.allowed
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
             dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
    return repr(value) if not isinstance(value, (dict, list)) else json.dumps(value, default=str)[:80]


def _fields(table: Any, fields: Mapping[str, Spec], path: str, prefix: str, problems: list[str]) -> dict:
    if not isinstance(table, Mapping):
        problems.append(f"{path}: field '{prefix.rstrip('.')}': value {_show(table)} has the wrong type; "
                        "expected a table")
        table = {}
    _unknown_keys(table, fields, path, prefix, problems)
    out: dict[str, Any] = {}
    for key, spec in fields.items():
        where = f"{path}: field '{prefix}{key}'"
        if key not in table:
            if spec.default is ABSENT:
                continue
            if spec.default is None:
                problems.append(f"{where}: missing; expected {_kind_text(spec)}")
            out[key] = spec.default
        else:
            value = _check_value(spec, table[key], where, problems)
            if value is not ABSENT:  # a bad value of an optional field: noted, and left out
                out[key] = value
    return out


def _section(raw: Mapping[str, Any], name: str, fields: Mapping[str, Spec], path: str, problems: list[str]):
    if name not in raw:
        return {k: s.default for k, s in fields.items() if s.default is not ABSENT}
    return _fields(raw[name], fields, path, f"{name}.", problems)


def _not_used(raw: Mapping[str, Any], name: str, own: Mapping[str, Spec], kept: Mapping[str, Spec], external: str,
              path: str, problems: list[str]) -> dict:
    """A section of a study trained by the user's code: the fields `kept`; classaudit's own (`own`) are refused,
    since the code would silently not use them."""
    table = raw.get(name, {})
    if not isinstance(table, Mapping):
        return _fields(table, kept, path, f"{name}.", problems)
    for key, value in table.items():
        if key in own and key not in kept:
            problems.append(f"{path}: field '{name}.{key}': value {_show(value)} is a setting of classaudit's own "
                            f"training, which a study with train.{external} does not use; remove it (and give it "
                            "to your code)")
    return _fields({k: v for k, v in table.items() if k in kept or k not in own}, kept, path, f"{name}.", problems)


def _check_external(path: str, train: Mapping[str, Any], baseline: Mapping[str, float], axes,
                    problems: list[str]) -> None:
    """A command's placeholders each name a value of the run; an axis of the user's code has no start epoch."""
    for axis in axes:
        if axis.start_epoch:
            problems.append(f"{path}: field 'sweep.{axis.name}.start_epoch': value {axis.start_epoch} is not "
                            "allowed with your own training code, which is told each strength, not when to switch "
                            "it on; remove start_epoch")
        if axis.class_strength or axis.class_weights:
            key = "class_weights" if axis.class_weights else "exempt or class_strength"
            problems.append(f"{path}: field 'sweep.{axis.name}': {key} is not allowed with your own training code, "
                            "which is told one strength per run; class-conditional remedies need classaudit's own "
                            "training")
    if "command" in train:
        from classaudit.external import command_problems

        names = [*(a.regularizer for a in axes), *baseline, *(["epochs"] if "epochs" in train else [])]
        problems.extend(command_problems(train["command"], names, f"{path}: field 'train.command"))


def _seeds(value: Any, path: str, problems: list[str]) -> Sequence[int]:
    where = f"{path}: field 'study.seeds'"
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            problems.append(f"{where}: value {value} is not allowed; expected a count >= 1 or a list of seeds")
            return ()
        return range(value)  # not a tuple: seeds = 20240101 (a seed meant, a count written) costs nothing here
    if not isinstance(value, list) or not value:
        problems.append(f"{where}: value {_show(value)} is not allowed; expected a non-empty list of distinct "
                        "integers >= 0, or a count n meaning 0..n-1")
        return ()
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or v < 0]
    if bad:
        problems.append(f"{where}: value {_show(bad[0])} is not allowed; seeds are integers >= 0")
        return ()
    dupes = sorted({v for v in value if value.count(v) > 1})
    if dupes:
        problems.append(f"{where}: seed {dupes[0]} appears more than once; seeds must be distinct")
    return tuple(sorted(set(value)))


def _options(section: dict, label: str, registry: Mapping[str, Mapping[str, Spec]], path: str,
             problems: list[str]) -> dict:
    name = section["name"]
    if name not in registry:
        problems.append(f"{path}: field '{label}.name': value {_show(name)} is not a known {label}"
                        f"{did_you_mean(name, registry)}; allowed: {', '.join(sorted(registry))}")
        return {}
    return _fields(section.get("options", {}), registry[name], path, f"{label}.options.", problems)


def _model_options(model: dict, path: str, problems: list[str]) -> dict:
    name = model["name"]
    if name in BUILTIN_MODELS:
        return _options(model, "model", MODEL_OPTIONS, path, problems)
    known = torchvision_classifiers()
    if name not in known:
        problems.append(
            f"{path}: field 'model.name': value {_show(name)} is not a known model"
            f"{did_you_mean(name, [*BUILTIN_MODELS, *known])}; allowed: {', '.join(BUILTIN_MODELS)}, or a "
            "torchvision classifier name (see `classaudit models`)"
        )
        return {}
    return _fields(model.get("options", {}), MODEL_OPTIONS["torchvision"], path, "model.options.", problems)


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's image classifiers (imports torchvision, so only when a study asks for one)."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _baseline(table: Any, train: Mapping[str, Any], path: str, problems: list[str]) -> dict[str, float]:
    if not isinstance(table, Mapping):
        problems.append(f"{path}: field 'baseline': value {_show(table)} has the wrong type; expected a table "
                        "of regularizer = strength")
        return {}
    out = {}
    for reg, value in table.items():
        where = f"{path}: field 'baseline.{reg}'"
        if reg not in REGULARIZERS:
            problems.append(f"{where}: unknown regularizer{did_you_mean(reg, REGULARIZERS)}; allowed: "
                            + ", ".join(REGULARIZERS))
            continue
        if REGULARIZERS[reg].off_field:  # its baseline is that field
            problems.append(f"{where}: value {_show(value)} is not allowed; the baseline of {reg} is "
                            f"{REGULARIZERS[reg].off_field}: set it there")
            continue
        strength = _strength(reg, value, where, problems)
        if strength is not None:
            out[reg] = strength
    return out


def off_value(reg: str, train: Mapping[str, Any]) -> float:
    """The strength of `reg` that changes nothing in a study with these train settings."""
    spec = REGULARIZERS[reg]
    return float(train[spec.off_field.removeprefix("train.")]) if spec.off_field else spec.off


def set_epochs(train: dict[str, Any], epochs: float) -> dict[str, Any]:
    """The `epochs` regularizer: the train settings with this training length, so each length is its own run
    with its own learning-rate schedule, and the study's own train.epochs is the off point."""
    return {**train, "epochs": int(epochs)}


def _strength(reg: str, value: Any, where: str, problems: list[str]) -> float | None:
    """The value as a float, or None (and a problem noted) when it is not an allowed strength."""
    spec = REGULARIZERS[reg]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{where}: value {_show(value)} has the wrong type; expected a number")
        return None
    if not spec.allows(float(value)):
        problems.append(f"{where}: value {_show(value)} is out of range for {reg}; allowed: {spec.range_text} "
                        f"({spec.unit}; off = {spec.off_text})")
        return None
    return float(value)


def _axes(table: Any, train: Mapping[str, Any], path: str, problems: list[str]) -> tuple[Axis, ...]:
    if not isinstance(table, Mapping) or (isinstance(table, Mapping) and not table):
        problems.append(f"{path}: field 'sweep': value {_show(table)} is not allowed; expected one or more "
                        "[sweep.<name>] tables, e.g. [sweep.crop] with strengths = [1.0, 0.5, 0.08]")
        return ()
    axes = []
    for name, body in table.items():
        prefix = f"sweep.{name}."
        if not NAME_PATTERN.match(name):
            problems.append(f"{path}: field 'sweep.{name}': axis name {_show(name)} is not allowed; "
                            f"expected {NAME_ALLOWED}")
            continue
        axis = _fields(body, AXIS_FIELDS, path, prefix, problems)
        reg = axis["regularizer"] or name
        if reg not in REGULARIZERS:
            key = "regularizer" if axis["regularizer"] else ""
            field_name = f"sweep.{name}.{key}".rstrip(".")
            problems.append(f"{path}: field '{field_name}': value {_show(reg)} is not a known regularizer"
                            f"{did_you_mean(reg, REGULARIZERS)}; allowed: {', '.join(REGULARIZERS)} (or set "
                            "regularizer = \"...\" in the table to name the axis freely)")
            continue
        values = axis["strengths"] or []
        if axis["strengths"] is not None and not values:
            problems.append(f"{path}: field '{prefix}strengths': value [] is not allowed; expected a non-empty "
                            "list of numbers")
        checked = [_strength(reg, v, f"{path}: field '{prefix}strengths[{i}]'", problems)
                   for i, v in enumerate(values)]
        strengths = [s for s in checked if s is not None]
        dupes = sorted({s for s in strengths if strengths.count(s) > 1})
        if dupes:
            problems.append(f"{path}: field '{prefix}strengths': value {dupes[0]:g} appears more than once; "
                            "strengths must be distinct")
        if not REGULARIZERS[reg].timed and isinstance(body, Mapping) and "start_epoch" in body:
            problems.append(f"{path}: field '{prefix}start_epoch': value {_show(body['start_epoch'])} is not "
                            f"allowed; {reg} is not switched on at an epoch (each strength is its own run from "
                            "the start): remove start_epoch")
        field = REGULARIZERS[reg].off_field.removeprefix("train.")
        if field and field not in train:  # a study trained by the user's code, which gives no train.epochs
            problems.append(f"{path}: field 'sweep.{name}': the off point of {reg} is train.{field}, which this "
                            f"study does not give; set train.{field} (the {reg} your code trains by default)")
            continue
        off = off_value(reg, train)
        if values and len(strengths) == len(values) and set(strengths) == {off}:
            problems.append(f"{path}: field '{prefix}strengths': value [{off:g}] is only the off point, which every "
                            f"axis includes; add at least one strength other than {off:g} to sweep {reg}")
        # The off point is every axis' reference, so it is always part of the grid.
        ordered = sorted(set(strengths) | {off}, key=lambda s: (abs(s - off), s))
        by_class, weights = _remedies(axis, reg, off, path, prefix, problems)
        axes.append(Axis(name, reg, tuple(ordered), axis["start_epoch"], off, by_class, weights))
    return tuple(axes)


def _remedies(axis: Mapping[str, Any], reg: str, off: float, path: str, prefix: str, problems: list[str]):
    """An axis' exempt classes and own strengths as ((class, strength), ...), exempt ones at off, and its class
    weights ("clam", ((class, weight), ...) or None). Class names are checked against the data set later."""
    spec = REGULARIZERS[reg]
    exempt, own = axis.get("exempt", []), axis.get("class_strength", {})
    for key, value in (("exempt", exempt), ("class_strength", own)):
        if value and not spec.per_class:
            per_class = ", ".join(r.name for r in REGULARIZERS.values() if r.per_class)
            problems.append(f"{path}: field '{prefix}{key}': value {_show(value)} is not allowed for {reg}, which "
                            f"acts on the whole model or optimizer, not image by image; classes can have their own "
                            f"strength with: {per_class}")
            return (), None
    pairs = [(c, off) for c in exempt]
    for cls, value in own.items():
        strength = _strength(reg, value, f"{path}: field '{prefix}class_strength.{cls}'", problems)
        if cls in exempt:
            problems.append(f"{path}: field '{prefix}class_strength.{cls}': class {_show(cls)} is also exempt; "
                            "give it in one of exempt and class_strength")
        elif strength is not None:
            pairs.append((cls, strength))
    twice = sorted({c for c in exempt if exempt.count(c) > 1})
    if twice:
        problems.append(f"{path}: field '{prefix}exempt': class {_show(twice[0])} appears more than once")
    weights = axis.get("class_weights")
    if isinstance(weights, dict):
        for cls, w in weights.items():
            ok = not isinstance(w, bool) and isinstance(w, (int, float)) and math.isfinite(w) and w > 0
            if not ok:
                problems.append(f"{path}: field '{prefix}class_weights.{cls}': value {_show(w)} is not allowed; "
                                f"expected {CLASS_WEIGHTS_ALLOWED}")
        weights = tuple(sorted((c, float(w)) for c, w in weights.items()))
    return tuple(sorted(dict(pairs).items())), weights


def class_names_of(dataset: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The names of the classes a study trains on, where they are known without loading the data (None
    otherwise: its runs then check the names when they load it); a `classes` list keeps those it names."""
    name = dataset.get("name")
    if name == "imagefolder":
        root = Path(str(dataset.get("options", {}).get("root", ""))).expanduser() / "train"
        names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir())) if root.is_dir() else None
    else:
        names = known_classes(name)[1] or TORCHVISION_CLASSES.get(name)
    kept = dataset.get("classes")
    if names is None or not isinstance(kept, list):
        return names
    if all(isinstance(c, str) for c in kept):
        return tuple(kept)
    return tuple(names[c] for c in kept if isinstance(c, int) and 0 <= c < len(names))


# torchvision's class names (its `classes`; SVHN has none and is named by digit), so a study can be checked before
# a download. tests/test_config.py compares them with torchvision's.
TORCHVISION_CLASSES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "mnist": ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
              "8 - eight", "9 - nine"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "svhn": tuple(str(i) for i in range(10)),
}


def _check_axis_classes(path: str, dataset: Mapping[str, Any], table: Any, problems: list[str]) -> None:
    """Every class an axis names (exempt, class_strength, class_weights) is one of the data set's, where its
    names are known."""
    classes = class_names_of(dataset) if isinstance(dataset.get("name"), str) else None
    if classes is None or not isinstance(table, Mapping):
        return
    for name, body in table.items():
        if not isinstance(body, Mapping):
            continue
        named = [(f"exempt[{i}]", c) for i, c in enumerate(body.get("exempt", []) or [])]
        for key in ("class_strength", "class_weights"):
            named += [(f"{key}.{c}", c) for c in (body.get(key) if isinstance(body.get(key), Mapping) else {})]
        for field, cls in named:
            if isinstance(cls, str) and cls not in classes:
                problems.append(f"{path}: field 'sweep.{name}.{field}': class {_show(cls)} is not a class of "
                                f"{dataset['name']}{did_you_mean(cls, classes)}; classes: {', '.join(classes)}")


def _check_models(path: str, model: Any, baseline: Mapping[str, float], axes, table: Any,
                  problems: list[str]) -> None:
    """Regularizers that act on layers only some models have (drop path: residual blocks)."""
    if not isinstance(model, str):
        return
    uses = [(f"baseline.{reg}", _show(s), reg) for reg, s in baseline.items()]
    uses += [(f"sweep.{a.name}.strengths", _show(table[a.name].get("strengths")), a.regularizer) for a in axes]
    for field, value, reg in uses:
        spec = REGULARIZERS[reg]
        if spec.models and model not in spec.models:
            problems.append(f"{path}: field '{field}': value {value} is not allowed with model {_show(model)}, "
                            f"which has no {spec.needs}; {reg} works with: {', '.join(spec.models)}")


def _check_start_epochs(path: str, axes, train: Mapping[str, Any], design: Any, problems: list[str]) -> None:
    epochs, why = train.get("epochs") or 0, "train.epochs"
    # In a factorial design every axis is also trained at the shortest length an epochs axis sweeps.
    lengths = [s for a in axes if REGULARIZERS[a.regularizer].off_field == "train.epochs" for s in a.strengths]
    if design == "factorial" and lengths and min(lengths) < epochs:
        epochs, why = int(min(lengths)), "the shortest training the epochs axis sweeps"
    total = epochs + (train.get("finetune_epochs") or 0)
    for axis in axes:
        if total and axis.start_epoch >= total:
            problems.append(f"{path}: field 'sweep.{axis.name}.start_epoch': value {axis.start_epoch} is not "
                            f"allowed; expected an epoch from 0 to {total - 1} ({why} + "
                            "train.finetune_epochs - 1)")


# ----------------------------------------------------------------------------------------------------------
# Expansion into runs.


def run_id(config: Mapping[str, Any]) -> str:
    """The run's identity: a hash of its resolved config, so any change to what it trains changes the id."""
    text = json.dumps(_thaw(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(study: Study, settings: Mapping[str, tuple[float, int]], seed: int) -> dict[str, Any]:
    """The full config of one run: the recipe plus every regularizer that is on, with its start epoch. A
    regularizer of the "recipe" stage (the training length) changes the recipe instead of being listed."""
    regs: dict[str, tuple] = {reg: (s, 0) for reg, s in study.baseline.items()}
    regs.update(settings)
    train = _thaw(study.train)
    train.pop("time_limit", None)  # how long the user's code may take does not change what it trains
    on = {}
    for reg, (s, e, *remedy) in sorted(regs.items()):
        spec = REGULARIZERS[reg]
        remedy = dict(remedy[0]) if remedy else {}  # an axis' class-conditional settings (Axis.remedy)
        if "class_weights" in remedy:
            train["class_weights"] = remedy.pop("class_weights")
        if spec.stage == "recipe":
            train = spec.implementation(train, s)
        elif s != spec.off:
            on[reg] = {"strength": s, "start_epoch": e, **remedy}
    dataset = _thaw(study.dataset)
    if study.external:  # [dataset] and [model] describe what the user's code trains, when the study says
        described = {"dataset": dataset, "model": _thaw(study.model)}
        return {**{k: v for k, v in described.items() if v}, "train": train, "regularizers": on, "seed": seed}
    if dataset["name"] == "shapes":  # generated data: its generator's version is part of what was trained on
        from classaudit.shapes import VERSION

        dataset["generator_version"] = VERSION
    return {
        "dataset": dataset,
        "model": _thaw(study.model),
        "train": train,
        "regularizers": on,
        "seed": seed,
    }


def expand(study: Study) -> list[Run]:
    """All runs of a study, each once, in a stable order (seed-major, so early results cover every point).

    one_at_a_time: each axis is varied alone around the baseline; points that resolve to the same config
    (the off point above all) are one run that belongs to several axes.
    factorial: every combination of the axes' strengths; a run belongs to an axis when every other axis is
    at its off value, so each axis still has its one-at-a-time slice for the analysis.
    """
    runs: dict[str, Run] = {}
    for seed in study.seeds:
        for point_settings, points in _grid(study):
            config = resolve(study, point_settings, seed)
            rid = run_id(config)
            if rid in runs:
                old = runs[rid]
                merged = old.points + tuple(p for p in points if p not in old.points)
                runs[rid] = dataclasses.replace(old, points=merged)
            else:
                runs[rid] = Run(rid, seed, config, tuple(points), f"{_describe(study, point_settings)} seed={seed}")
    return list(runs.values())


def count_runs(study: Study) -> int:
    """How many runs expand(study) gives, from one seed's grid: every seed has the same distinct configs."""
    if not study.seeds:
        return 0
    return len(study.seeds) * len(expand(dataclasses.replace(study, seeds=study.seeds[:1])))


def _describe(study: Study, settings: Mapping[str, tuple[float, int]]) -> str:
    """The settings that differ from the baseline, e.g. "crop=0.08@3" (on from epoch 3), or "baseline"."""
    parts = []
    for reg, (s, epoch, *remedy) in settings.items():
        off = off_value(reg, study.train)
        if s == study.baseline.get(reg, off) and (epoch == 0 or s == off):
            continue
        parts.append(f"{reg}={s:g}" + (f"@{epoch}" if epoch and s != off else ""))
        for key, value in (remedy[0] if remedy else {}).items():  # e.g. exempt(cat,dog), class_strength(cat=1)
            if isinstance(value, str):
                parts.append(f"{key}({value})")
                continue
            exempt = [c for c, v in value.items() if key == "class_strength" and v == off]
            own = ",".join(f"{c}={v:g}" for c, v in value.items() if c not in exempt)
            parts += ([f"exempt({','.join(exempt)})"] if exempt else []) + ([f"{key}({own})"] if own else [])
    return ", ".join(parts) or "baseline"


def _grid(study: Study):
    if study.design == "one_at_a_time":
        for axis in study.axes:
            for s in axis.strengths:
                yield ({axis.regularizer: (s, axis.start_epoch, axis.remedy(s))},
                       [Point(axis.name, axis.regularizer, s, s == axis.off)])
        return
    for combo in itertools.product(*(axis.strengths for axis in study.axes)):
        settings = {a.regularizer: (s, a.start_epoch, a.remedy(s)) for a, s in zip(study.axes, combo)}
        points = []
        for i, (axis, s) in enumerate(zip(study.axes, combo)):
            others_off = all(o == b.off for j, (b, o) in enumerate(zip(study.axes, combo)) if j != i)
            if others_off:
                points.append(Point(axis.name, axis.regularizer, s, s == axis.off))
        yield settings, points


# ----------------------------------------------------------------------------------------------------------
# The [transfer] table: a downstream task each run is probed on after it trains.
#
# The probe is a measurement of the trained run, not part of what it trains: the transfer table is not in the
# run's config, so adding, changing or removing it changes no run id, and a finished run gains a probe without
# training again (its weights are stored with it). The probe has its own id (`transfer_id`), the hash of the
# resolved table, under which its results are stored in the run's folder; a changed table is a new probe.

TRANSFER_FIELDS = {
    "dataset": Spec(dict, None, None, 'a table [transfer.dataset] naming the downstream data set, e.g. name = '
                    '"shapes_downstream"'),
    "probe": Spec(dict, {}),
}
# The L2 strengths the probe tries (on standardised features, per unit of mean cross entropy); the downstream
# validation split picks one.
PROBE_L2 = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
PROBE_FIELDS = {
    "l2": Spec(list, PROBE_L2, lambda v: bool(v) and len(set(v)) == len(v) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in v),
               "a non-empty list of distinct numbers >= 0 (L2 strengths of the probe, picked on transfer_val)"),
    "max_iter": _int(1, 10000, 200),  # L-BFGS iterations per L2 strength
}
# What can be checked about a data set's classes before loading it: the count, and the names where they are fixed.
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion_mnist": 10, "svhn": 10}
_GREY = ("mnist", "fashion_mnist")  # 1-channel images; every other data set is RGB


def known_classes(name: str) -> tuple[int | None, tuple[str, ...] | None]:
    """(class count, class names) of a data set as far as they are known without loading it; None: unknown."""
    from classaudit import shapes

    names = {"shapes": shapes.CLASSES, "shapes_downstream": shapes.DOWNSTREAM_CLASSES, "cifar10": _CIFAR10}.get(name)
    return (len(names) if names else _CLASS_COUNTS.get(name)), names


def _check_classes(dataset: Mapping[str, Any], label: str, path: str, problems: list[str]) -> None:
    """A `classes` list names classes the data set has, each once."""
    where = f"{path}: field '{label}.classes'"
    classes, name = dataset["classes"], dataset["name"]
    count, names = known_classes(name)
    dupes = [c for i, c in enumerate(classes) if c in classes[:i]]
    if dupes:
        problems.append(f"{where}: class {_show(dupes[0])} appears more than once; classes must be distinct")
    for c in classes:
        if isinstance(c, int) and count is not None and not 0 <= c < count:
            problems.append(f"{where}: value {_show(classes)} names class id {c}, but {name} has {count} classes "
                            f"(ids 0 to {count - 1}); allowed: ids 0 to {count - 1}"
                            + (f" or the names {', '.join(names)}" if names else ""))
        elif isinstance(c, int) and c < 0:
            problems.append(f"{where}: value {_show(classes)} names class id {c}; ids are 0 or more")
        elif isinstance(c, str) and names is not None and c not in names:
            problems.append(f"{where}: value {_show(classes)} names class {_show(c)}, which {name} does not have"
                            f"{did_you_mean(c, names)}; allowed: {', '.join(names)}")


def _transfer(raw: Mapping[str, Any], external: str | None, path: str, problems: list[str]) -> dict | None:
    """The validated [transfer] table, or None after noting its problems."""
    if external:
        problems.append(f"{path}: field 'transfer': a study whose runs are your own code (train.{external}) cannot "
                        "be probed, since classaudit holds no model of its runs; remove the [transfer] table")
        return None
    table = _fields(raw["transfer"], TRANSFER_FIELDS, path, "transfer.", problems)
    if not isinstance(table.get("dataset"), Mapping):
        return None
    dataset = _fields(table["dataset"], DATASET_FIELDS, path, "transfer.dataset.", problems)
    probe = _fields(table["probe"], PROBE_FIELDS, path, "transfer.probe.", problems)
    name = dataset.get("name")
    if not isinstance(name, str):
        return None
    if name not in DATASET_OPTIONS:
        problems.append(f"{path}: field 'transfer.dataset.name': value {_show(name)} is not a known dataset"
                        f"{did_you_mean(name, DATASET_OPTIONS)}; allowed: {', '.join(sorted(DATASET_OPTIONS))}")
        return None
    if dataset.get("n_val_per_class", ABSENT) is not ABSENT:
        given = raw["transfer"]["dataset"]
        if "val_fraction" in given:
            problems.append(f"{path}: field 'transfer.dataset.n_val_per_class': value {_show(given['n_val_per_class'])}"
                            f" is given with transfer.dataset.val_fraction = {_show(given['val_fraction'])}; give one "
                            "of them")
        dataset.pop("val_fraction", None)
    elif dataset.get("val_fraction") == 0:
        problems.append(f"{path}: field 'transfer.dataset.val_fraction': value 0 is not allowed; the probe's L2 "
                        "strength is chosen on the downstream validation split: expected a number with "
                        "0 < x <= 0.9")
    dataset["options"] = _options(dataset, "transfer.dataset", DATASET_OPTIONS, path, problems)
    if isinstance(dataset.get("classes"), list):
        _check_classes(dataset, "transfer.dataset", path, problems)
    upstream = raw.get("dataset", {}).get("name") if isinstance(raw.get("dataset"), Mapping) else None
    if isinstance(upstream, str) and (upstream in _GREY) != (name in _GREY) and upstream in DATASET_OPTIONS:
        channels = {True: "1-channel (grey)", False: "3-channel (RGB)"}
        problems.append(f"{path}: field 'transfer.dataset.name': value {_show(name)} has {channels[name in _GREY]} "
                        f"images, but the pre-training data set {_show(upstream)} has "
                        f"{channels[upstream in _GREY]} ones, which the backbone takes; probe on a data set of the "
                        "same kind")
    return {"dataset": dataset, "probe": {"l2": sorted(float(x) for x in probe["l2"]), "max_iter": probe["max_iter"]}}


def resolve_transfer(study: Study) -> dict[str, Any] | None:
    """The resolved downstream task of a study (what its probes measure), or None without a [transfer] table."""
    if study.transfer is None:
        return None
    spec = _thaw(study.transfer)
    if spec["dataset"]["name"].startswith("shapes"):  # generated data: the generator's version is part of it
        from classaudit.shapes import VERSION

        spec["dataset"]["generator_version"] = VERSION
    return spec


def transfer_id(spec: Mapping[str, Any]) -> str:
    """The probe's identity: a hash of its resolved transfer table (a run id's recipe, for the downstream task)."""
    return run_id(spec)
