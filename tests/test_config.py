"""Study validation (messages asserted exactly), run expansion and run ids."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from classaudit.config import apply_overrides, expand, load_study, parse_study, run_id
from classaudit.errors import UsageError
from tests.conftest import TINY_STUDY

BASE = tomllib.loads(TINY_STUDY)
PINNED_TINY_OFF_RUN_ID = "144f75e1dcd660a0"  # the tiny study's first run, as every version since 0.1 names it


def study_with(_base=BASE, **changes):
    """The tiny study (or `_base`) with fields replaced: study_with(**{"train.epochs": 0})."""
    raw = copy.deepcopy(_base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        table = raw
        for p in parents:
            table = table.setdefault(p, {})
        if value is _DELETE:
            del table[last]
        else:
            table[last] = value
    return raw


_DELETE = object()


def error_of(raw) -> str:
    with pytest.raises(UsageError) as info:
        parse_study(raw, "s.toml")
    return str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"train.epoch": 3},
     "s.toml: field 'train.epoch': unknown key (did you mean \"epochs\"?); allowed: batch_size, command, "
     "decay_norm_and_bias, epochs, eval_batch_size, finetune_epochs, flip, function, lr, momentum, nesterov, "
     "optimizer, schedule, time_limit, tta, warmup_fraction"),
    ({"dataset.name": "cifar11"},
     "s.toml: field 'dataset.name': value \"cifar11\" is not a known dataset (did you mean \"cifar10\"?); allowed: "
     "cifar10, cifar100, fashion_mnist, imagefolder, mnist, shapes, shapes_downstream, svhn"),
    ({"sweep.crop.strengths": [1.0, -0.5]},
     "s.toml: field 'sweep.crop.strengths[1]': value -0.5 is out of range for crop; allowed: 0 < s <= 1 (lower "
     "scale bound s of RandomResizedCrop (area fraction kept; aspect 3/4..4/3); off = 1)"),
    ({"sweep.crop.strengths": [1.0, 1.5]},
     "s.toml: field 'sweep.crop.strengths[1]': value 1.5 is out of range for crop; allowed: 0 < s <= 1 (lower "
     "scale bound s of RandomResizedCrop (area fraction kept; aspect 3/4..4/3); off = 1)"),
    ({"sweep.crop.strengths": [float("nan")]},
     "s.toml: field 'sweep.crop.strengths[0]': value nan is out of range for crop; allowed: 0 < s <= 1 (lower "
     "scale bound s of RandomResizedCrop (area fraction kept; aspect 3/4..4/3); off = 1)"),
    ({"sweep.cutmix.strengths": [float("inf")]},
     "s.toml: field 'sweep.cutmix.strengths[0]': value inf is out of range for cutmix; allowed: 0 <= s <= 1 "
     "(probability p that an image is mixed with a partner; box from lambda ~ Beta(1, 1); off = 0)"),
    ({"sweep.crop.strengths": [0.5, 0.5]},
     "s.toml: field 'sweep.crop.strengths': value 0.5 appears more than once; strengths must be distinct"),
    ({"sweep.crop.strengths": []},
     "s.toml: field 'sweep.crop.strengths': value [] is not allowed; expected a non-empty list of numbers"),
    ({"sweep.crop.strengths": ["0.5"]},
     "s.toml: field 'sweep.crop.strengths[0]': value \"0.5\" has the wrong type; expected a number"),
    ({"train.epochs": "10"},
     "s.toml: field 'train.epochs': value \"10\" has the wrong type; expected an integer >= 1"),
    ({"train.epochs": 0},
     "s.toml: field 'train.epochs': value 0 is not allowed; expected an integer >= 1"),
    ({"train.lr": True},
     "s.toml: field 'train.lr': value true has the wrong type; expected a number with 0 < x <= 100"),
    ({"train.optimizer": "adam"},
     "s.toml: field 'train.optimizer': value \"adam\" is not allowed; expected one of \"sgd\", \"adamw\""),
    ({"model.name": "resnet5O"},
     "s.toml: field 'model.name': value \"resnet50_\" is not a known model"),
    ({"sweep.blur": {"strengths": [1.0]}},
     "s.toml: field 'sweep.blur': value \"blur\" is not a known regularizer; allowed: translate, crop, "
     "color_jitter, random_erasing, cutmix, mixup, label_smoothing, weight_decay, dropout, drop_path, sam, "
     "grad_clip, epochs (or set regularizer = \"...\" in the table to name the axis freely)"),
    ({"sweep.late": {"regularizer": "crpo", "strengths": [0.5]}},
     "s.toml: field 'sweep.late.regularizer': value \"crpo\" is not a known regularizer (did you mean \"crop\"?); "
     "allowed: translate, crop, color_jitter, random_erasing, cutmix, mixup, label_smoothing, weight_decay, "
     "dropout, drop_path, sam, grad_clip, epochs (or set regularizer = \"...\" in the table to name the axis "
     "freely)"),
    ({"sweep.crop.start_epoch": 1},
     "s.toml: field 'sweep.crop.start_epoch': value 1 is not allowed; expected an epoch from 0 to 0 "
     "(train.epochs + train.finetune_epochs - 1)"),
    ({"study.seeds": [0, 0]},
     "s.toml: field 'study.seeds': seed 0 appears more than once; seeds must be distinct"),
    ({"study.seeds": []},
     "s.toml: field 'study.seeds': value [] is not allowed; expected a non-empty list of distinct integers >= 0, "
     "or a count n meaning 0..n-1"),
    ({"study.name": "../evil"},
     "s.toml: field 'study.name': value \"../evil\" is not allowed; expected 1-64 letters, digits, '_', '.', '-', "
     "starting with a letter or digit"),
    ({"study.name": _DELETE},
     "s.toml: field 'study.name': missing; expected 1-64 letters, digits, '_', '.', '-', starting with a letter "
     "or digit"),
    ({"baseline.weight_decay": -1e-4},
     "s.toml: field 'baseline.weight_decay': value -0.0001 is out of range for weight_decay; allowed: 0 <= s <= 1 "
     "(coefficient; coupled (L2 in the gradient) for SGD, decoupled for AdamW; off = 0)"),
    ({"dataset.options.n_train_per_clas": 5},
     "s.toml: field 'dataset.options.n_train_per_clas': unknown key (did you mean \"n_train_per_class\"?); "
     "allowed: n_test_per_class, n_train_per_class, seed, size"),
    ({"dataset.options": {"size": 8}},
     "s.toml: field 'dataset.options.size': value 8 is not allowed; expected an integer from 16 to 128"),
    ({"study.design": "grid"},
     "s.toml: field 'study.design': value \"grid\" is not allowed; expected one of \"one_at_a_time\", \"factorial\""),
    ({"sweep.crop.strengths": [1.0]},
     "s.toml: field 'sweep.crop.strengths': value [1] is only the off point, which every axis includes; add at "
     "least one strength other than 1 to sweep crop"),
    ({"dataset.val_fraction": 1.5},
     "s.toml: field 'dataset.val_fraction': value 1.5 is not allowed; expected a number with 0 <= x <= 0.9"),
    ({"dataset.n_train_per_class": -5},
     "s.toml: field 'dataset.n_train_per_class': value -5 is not allowed; expected an integer >= 1"),
    ({"dataset.n_train_per_class": 0},
     "s.toml: field 'dataset.n_train_per_class': value 0 is not allowed; expected an integer >= 1"),
    ({"dataset.n_train_per_class": 50.5},
     "s.toml: field 'dataset.n_train_per_class': value 50.5 has the wrong type; expected an integer >= 1"),
    ({"dataset.n_val_per_class": "all"},
     "s.toml: field 'dataset.n_val_per_class': value \"all\" has the wrong type; expected an integer >= 1"),
    ({"dataset.n_val_per_class": 0},
     "s.toml: field 'dataset.n_val_per_class': value 0 is not allowed; expected an integer >= 1"),
    ({"dataset.n_val_per_class": 100},
     "s.toml: field 'dataset.n_val_per_class': value 100 is given with dataset.val_fraction = 0.2; give one of "
     "them (a count of validation images per class, or a fraction of each class)"),
    # The regularizers of issue 21: negative, out of range, and drop path on a model without residual blocks.
    ({"sweep.dropout": {"strengths": [-0.1]}},
     "s.toml: field 'sweep.dropout.strengths[0]': value -0.1 is out of range for dropout; allowed: 0 <= s < 1 "
     "(probability p that an activation is zeroed (the others are scaled by 1 / (1 - p)); off = 0)"),
    ({"sweep.dropout": {"strengths": [1.0]}},
     "s.toml: field 'sweep.dropout.strengths[0]': value 1.0 is out of range for dropout; allowed: 0 <= s < 1 "
     "(probability p that an activation is zeroed (the others are scaled by 1 / (1 - p)); off = 0)"),
    ({"sweep.sam": {"strengths": [-0.05]}},
     "s.toml: field 'sweep.sam.strengths[0]': value -0.05 is out of range for sam; allowed: 0 <= s <= 1 (rho: "
     "radius of the neighbourhood whose worst point (to first order) gives the gradient; off = 0)"),
    ({"sweep.sam": {"strengths": [2.0]}},
     "s.toml: field 'sweep.sam.strengths[0]': value 2.0 is out of range for sam; allowed: 0 <= s <= 1 (rho: "
     "radius of the neighbourhood whose worst point (to first order) gives the gradient; off = 0)"),
    ({"sweep.grad_clip": {"strengths": [-1.0]}},
     "s.toml: field 'sweep.grad_clip.strengths[0]': value -1.0 is out of range for grad_clip; allowed: 0 <= s <= "
     "1000 (largest L2 norm of the gradient (all parameters together); larger ones are scaled down to it; 0 = no "
     "clipping; off = 0)"),
    ({"sweep.epochs": {"strengths": [0]}},
     "s.toml: field 'sweep.epochs.strengths[0]': value 0 is out of range for epochs; allowed: 1 <= s <= 10000, a "
     "whole number (training length in epochs; each length is its own run with its own schedule; off = "
     "train.epochs)"),
    ({"sweep.epochs": {"strengths": [2.5]}},
     "s.toml: field 'sweep.epochs.strengths[0]': value 2.5 is out of range for epochs; allowed: 1 <= s <= 10000, "
     "a whole number (training length in epochs; each length is its own run with its own schedule; off = "
     "train.epochs)"),
    ({"sweep.epochs": {"strengths": [1]}},
     "s.toml: field 'sweep.epochs.strengths': value [1] is only the off point, which every axis includes; add at "
     "least one strength other than 1 to sweep epochs"),
    ({"sweep.epochs": {"strengths": [2, 4], "start_epoch": 0}},
     "s.toml: field 'sweep.epochs.start_epoch': value 0 is not allowed; epochs is not switched on at an epoch "
     "(each strength is its own run from the start): remove start_epoch"),
    ({"baseline.epochs": 3},
     "s.toml: field 'baseline.epochs': value 3 is not allowed; the baseline of epochs is train.epochs: set it there"),
    ({"sweep.drop_path": {"strengths": [0.1, 0.2]}},
     "s.toml: field 'sweep.drop_path.strengths': value [0.1, 0.2] is not allowed with model \"smallcnn\", which has "
     "no residual blocks; drop_path works with: cifar_resnet18"),
    ({"baseline.drop_path": 0.1},
     "s.toml: field 'baseline.drop_path': value 0.1 is not allowed with model \"smallcnn\", which has no residual "
     "blocks; drop_path works with: cifar_resnet18"),
])
def test_bad_field_gives_one_exact_message(changes, message):
    got = error_of(study_with(**changes))
    if message.endswith("is not a known model"):  # the rest lists torchvision's names
        assert got.startswith("s.toml: field 'model.name': value \"resnet5O\" is not a known model (did you mean")
    else:
        assert got == message


def test_all_problems_are_reported_at_once():
    got = error_of(study_with(**{"train.epochs": 0, "train.lr": -1, "sweep.crop.strengths": [2.0]}))
    assert len(got.splitlines()) == 3


def test_missing_sweep_and_unknown_top_level():
    raw = study_with(**{"sweep": _DELETE, "sweeps": {}})
    got = error_of(raw).splitlines()
    assert got[0] == ("s.toml: field 'sweeps': unknown key (did you mean \"sweep\"?); allowed: baseline, dataset, "
                      "model, study, sweep, train, transfer")
    assert "s.toml: field 'sweep': missing; add a [sweep] table" in got


def test_file_errors(tmp_path):
    with pytest.raises(UsageError, match="no such study file"):
        load_study(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname='x'")
    with pytest.raises(UsageError, match=r"bad.toml: not valid TOML"):
        load_study(bad)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"[study]\nname = '\xe9'\n")
    with pytest.raises(UsageError, match="not UTF-8 text"):
        load_study(latin)
    with pytest.raises(UsageError, match="is a folder"):
        load_study(tmp_path)


def test_expansion_one_at_a_time_shares_the_off_run():
    study = parse_study(BASE)
    runs = expand(study)
    # Per seed: one shared off run + crop 0.5 + cutmix 0.5 = 3 runs; two seeds.
    assert len(runs) == 6
    off = [r for r in runs if not r.config["regularizers"]]
    assert len(off) == 2
    assert {(p.axis, p.strength, p.is_off) for p in off[0].points} == {("crop", 1.0, True), ("cutmix", 0.0, True)}
    assert len({r.run_id for r in runs}) == 6


def test_off_value_is_always_part_of_the_grid():
    study = parse_study(study_with(**{"sweep.crop.strengths": [0.5, 0.08]}))
    assert study.axes[0].strengths == (1.0, 0.5, 0.08)


def test_factorial_grid():
    study = parse_study(study_with(**{"study.design": "factorial"}))
    runs = expand(study)
    assert len(runs) == 2 * 2 * 2
    both_on = [r for r in runs if len(r.config["regularizers"]) == 2]
    assert len(both_on) == 2 and all(r.points == () for r in both_on)


def test_run_id_changes_with_config_and_not_with_key_order():
    study = parse_study(BASE)
    run = expand(study)[0]
    same = dict(reversed(list(run.config.items())))
    assert run_id(same) == run.run_id
    longer = parse_study(apply_overrides(BASE, ["train.epochs=2"]))
    assert {r.run_id for r in expand(longer)}.isdisjoint({r.run_id for r in expand(study)})


def test_start_epoch_axis_is_a_different_run():
    raw = study_with(**{"train.epochs": 3, "sweep.crop_late": {"regularizer": "crop", "strengths": [0.5],
                                                              "start_epoch": 2}})
    runs = expand(parse_study(raw))
    late = [r for r in runs if r.config["regularizers"].get("crop", {}).get("start_epoch") == 2]
    assert len(late) == 2 and late[0].points[0].axis == "crop_late"


def test_study_is_frozen():
    study = parse_study(BASE)
    with pytest.raises(TypeError):
        study.train["epochs"] = 5  # type: ignore[index]


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_studies_are_valid(path):
    study = load_study(path)
    assert study.name == path.stem and expand(study)


def test_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(TINY_STUDY)
    study = load_study(path, ["train.epochs=3", "model.options.width=8", "dataset.name=shapes",
                              "sweep.crop.strengths=[1.0, 0.3]"])
    assert study.train["epochs"] == 3 and study.model["options"]["width"] == 8
    assert study.axes[0].strengths == (1.0, 0.3)
    # A problem with an override names the option, not the file, which may say something else.
    with pytest.raises(UsageError) as info:
        load_study(path, ["train.epochs=0", "model.options={width = 0}", "train.epoch=2", "trian.lr=1"])
    assert sorted(str(info.value).splitlines()) == sorted([
        f"option --set trian.lr=1 (over {path}): field 'trian': unknown key (did you mean \"train\"?); allowed: "
        "baseline, dataset, model, study, sweep, train, transfer",
        f"option --set train.epoch=2 (over {path}): field 'train.epoch': unknown key (did you mean \"epochs\"?); "
        "allowed: batch_size, command, decay_norm_and_bias, epochs, eval_batch_size, finetune_epochs, flip, "
        "function, lr, momentum, nesterov, optimizer, schedule, time_limit, tta, warmup_fraction",
        f"option --set model.options={{width = 0}} (over {path}): field 'model.options.width': value 0 is not "
        "allowed; expected an integer from 1 to 1024",
        f"option --set train.epochs=0 (over {path}): field 'train.epochs': value 0 is not allowed; expected an "
        "integer >= 1"])
    with pytest.raises(UsageError, match="is not KEY=VALUE"):
        load_study(path, ["train.epochs"])
    with pytest.raises(UsageError, match="'train.epochs' is not a table"):
        load_study(path, ["train.epochs.x=1"])


def test_the_gpu_studies_name_the_override_that_gives_the_cpu_recipe():
    # The GPU study files (and the README) say which --set options turn them into the CPU recipe of
    # studies/cifar10_cpu.toml; that must stay true when either changes. Only the data set's source (torchvision
    # download or the JPEG copy) and the evaluation batch size, which does not change what is learned, differ.
    import re

    root = Path(__file__).resolve().parents[1]
    cpu = load_study(root / "studies" / "cifar10_cpu.toml")
    readme = (root / "README.md").read_text()
    block = readme[readme.index("classaudit sweep studies/cifar10_crop.toml --set"):]
    sources = {path.name: path.read_text() for path in (root / "studies").glob("cifar10_*.toml")
               if path.name != "cifar10_cpu.toml" and not path.name.startswith("cifar10_paper")}
    sources["README.md"] = block[:block.index("```")]
    assert len(sources) == 6

    def recipe(study):
        train = {k: v for k, v in dict(study.train).items() if k != "eval_batch_size"}
        return dict(study.model), train, dict(study.baseline)

    for name, text in sources.items():
        sets = re.findall(r"--set (\S+)", text)
        study = load_study(root / "studies" / ("cifar10_crop.toml" if name == "README.md" else name), sets)
        assert recipe(study) == recipe(cpu), name
    everything = load_study(root / "studies" / "cifar10_all.toml")
    assert (everything.axes, everything.seeds) == (cpu.axes, cpu.seeds)  # the same grids and seeds


def test_data_limited_fields_reach_the_run_config_and_leave_old_run_ids_alone():
    plain = expand(parse_study(BASE, "s.toml"))
    raw = study_with(**{"dataset.n_train_per_class": 40, "dataset.n_val_per_class": 20,
                        "dataset.val_fraction": _DELETE})
    limited = expand(parse_study(raw, "s.toml"))
    dataset = limited[0].config["dataset"]
    assert dataset["n_train_per_class"] == 40 and dataset["n_val_per_class"] == 20
    assert "val_fraction" not in dataset  # the count decides; no unused fraction in the run's config
    assert "n_train_per_class" not in plain[0].config["dataset"]
    assert {r.run_id for r in limited}.isdisjoint(r.run_id for r in plain)
    # Fields that are not given are left out of the resolved config: the ids are those of before the fields
    # existed (this one is pinned from a results folder written then).
    assert plain[0].run_id == PINNED_TINY_OFF_RUN_ID


def test_epochs_axis_lengths_are_runs_of_their_own_length_and_its_off_point_is_train_epochs():
    """Each length is the run a study with that train.epochs would train (same config, same id); the study's own
    train.epochs is the shared off point; the regularizers list never names epochs."""
    raw = study_with(**{"train.epochs": 2, "sweep.epochs": {"strengths": [1, 4]}})
    study = parse_study(raw, "s.toml")
    axis = [a for a in study.axes if a.name == "epochs"][0]
    assert (axis.off, axis.strengths) == (2.0, (2.0, 1.0, 4.0))
    runs = expand(study)
    by_epochs = {r.config["train"]["epochs"]: r for r in runs if r.seed == 0 and not r.config["regularizers"]}
    assert sorted(by_epochs) == [1, 2, 4] and all(isinstance(e, int) for e in by_epochs)
    assert {(p.axis, p.strength, p.is_off) for p in by_epochs[2].points} >= {("epochs", 2.0, True)}
    for length in (1, 4):
        alone = expand(parse_study(study_with(**{"train.epochs": length}), "s.toml"))
        assert by_epochs[length].run_id in {r.run_id for r in alone}
        assert by_epochs[length].label == f"epochs={length} seed=0"
    moved = parse_study(apply_overrides(raw, ["train.epochs=4"]), "s.toml")
    assert [a.strengths for a in moved.axes if a.name == "epochs"] == [(4.0, 1.0)]  # 4 is the off point now


def test_a_factorial_epochs_axis_bounds_every_start_epoch_by_its_shortest_length():
    raw = study_with(**{"study.design": "factorial", "train.epochs": 4, "sweep.crop.start_epoch": 2,
                        "sweep.epochs": {"strengths": [2, 6]}})
    assert error_of(raw) == ("s.toml: field 'sweep.crop.start_epoch': value 2 is not allowed; expected an epoch "
                             "from 0 to 1 (the shortest training the epochs axis sweeps + train.finetune_epochs - 1)")
    parse_study(study_with(**{"train.epochs": 4, "sweep.crop.start_epoch": 2, "sweep.epochs": {"strengths": [2]}}))


def test_new_regularizers_leave_existing_run_ids_alone_and_are_listed_only_when_on():
    plain = expand(parse_study(BASE, "s.toml"))
    assert plain[0].run_id == PINNED_TINY_OFF_RUN_ID
    raw = study_with(**{"model.name": "cifar_resnet18", "model.options": {}, "train.epochs": 2,
                        "sweep.dropout": {"strengths": [0.2]}, "sweep.drop_path": {"strengths": [0.1]},
                        "sweep.sam": {"strengths": [0.05], "start_epoch": 1}, "sweep.grad_clip": {"strengths": [1.0]},
                        "sweep.epochs": {"strengths": [1]}})
    runs = [r for r in expand(parse_study(raw, "s.toml")) if r.seed == 0]
    assert sum(1 for r in runs if not r.config["regularizers"] and r.config["train"]["epochs"] == 2) == 1
    on = {name: spec for r in runs for name, spec in r.config["regularizers"].items()}
    assert on == {"crop": {"strength": 0.5, "start_epoch": 0}, "cutmix": {"strength": 0.5, "start_epoch": 0},
                  "dropout": {"strength": 0.2, "start_epoch": 0}, "drop_path": {"strength": 0.1, "start_epoch": 0},
                  "sam": {"strength": 0.05, "start_epoch": 1}, "grad_clip": {"strength": 1.0, "start_epoch": 0}}
