"""Class-conditional remedies: per-class strengths in the batched regularizers (exempt classes untouched bit for
bit, the others at their configured strength), class weights on the loss, the study fields and their messages,
and `classaudit remedy` writing a follow-up study that reuses every finished run."""

from __future__ import annotations

import json
import math
import shutil
import tomllib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from classaudit import augment
from classaudit.config import expand, load_study, parse_study
from classaudit.errors import UsageError
from classaudit.regularizers import REGULARIZERS
from classaudit.classwise import ByClass, class_strengths, class_weights
from classaudit.train import _loss, augment_batch, cross_entropy
from tests.conftest import ROOT, TINY_STUDY

PER_IMAGE = [r.name for r in REGULARIZERS.values() if r.per_class and r.stage != "loss"]
K = 4  # classes in the batches below; 0 and 1 are exempt


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 256):
    x = torch.randint(0, 256, (n, 3, 16, 16), generator=gen(7), dtype=torch.uint8)
    return x, torch.arange(n) % K


def augmented(active, per_class, n: int = 256, seed: int = 3):
    x, y = batch(n)
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    return augment_batch(x, y, K, active, zero, one, gen(seed), per_class=per_class)


def table(name: str, strengths) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(strengths, dtype=torch.float32)}


def as_targets(target: torch.Tensor) -> torch.Tensor:
    return target if target.is_floating_point() else F.one_hot(target, K).float()


@pytest.mark.parametrize("name", PER_IMAGE)
def test_exempt_classes_are_untouched_bit_for_bit_and_the_others_change(name):
    reg = REGULARIZERS[name]
    s = reg.example
    x_on, t_on = augmented({name: s}, table(name, [reg.off, reg.off, s, s]))
    x_off, t_off = augmented({}, {})
    y = batch()[1]
    exempt = y < 2
    assert torch.equal(x_on[exempt], x_off[exempt])
    assert torch.equal(as_targets(t_on)[exempt], as_targets(t_off)[exempt])
    changed = (x_on != x_off).flatten(1).any(1)
    assert changed[~exempt].float().mean() > (0.3 if reg.rate else 0.9), f"{name}: too few images changed"


@pytest.mark.parametrize("name", ["crop", "color_jitter", "random_erasing", "cutmix", "mixup"])
def test_a_strength_per_image_draws_as_the_batch_strength_does(name):
    """The same draws: a tensor of equal strengths gives the one-number output (to float rounding)."""
    reg = REGULARIZERS[name]
    x = torch.rand(64, 3, 16, 16, generator=gen(1))
    s = torch.full((64,), float(reg.example))
    if reg.stage == "batch":
        target = F.one_hot(torch.arange(64) % 10, 10).float()
        a, ta = reg.implementation(x, target, reg.example, gen(5))
        b, tb = reg.implementation(x, target, s, gen(5))
        assert torch.allclose(ta, tb, atol=1e-6)
    else:
        a, b = reg.implementation(x, reg.example, gen(5)), reg.implementation(x, s, gen(5))
    assert torch.allclose(a, b, atol=1e-5)


def test_translate_moves_each_image_within_its_own_bound():
    """Pixels hold their own positions, so each image's shift is read off its centre pixel."""
    n, H = 400, 16
    grid = (torch.arange(H * H, dtype=torch.float32) / (H * H)).view(1, 1, H, H).expand(n, 3, H, H).contiguous()
    bound = torch.tensor([0.0, 1.0, 3.0, 3.0]).repeat(n // 4)
    out = augment.translate(grid, bound, gen(2))
    position = (out[:, 0, H // 2, H // 2] * H * H).round().long()
    dy, dx = position // H - H // 2, position % H - H // 2
    assert torch.all(dy.abs() <= bound.long()) and torch.all(dx.abs() <= bound.long())
    assert torch.equal(out[bound == 0], grid[bound == 0])
    assert set(dx[bound == 3].tolist()) == set(range(-3, 4)), "every shift within the bound is drawn"


@pytest.mark.parametrize("name", [r.name for r in REGULARIZERS.values() if r.rate and r.per_class])
def test_each_class_is_changed_at_its_own_rate(name):
    n, rates = 8000, [0.0, 0.2, 0.5, 0.9]
    x_on, _ = augmented({name: 0.5}, table(name, rates), n=n)
    x_off, _ = augmented({}, {}, n=n)
    y = batch(n)[1]
    changed = (x_on != x_off).flatten(1).any(1).float()
    for k, p in enumerate(rates):
        # random erasing skips an image whose box draws all fail to fit: its rate is a hair under p
        measured, sd = changed[y == k].mean().item(), math.sqrt(max(p * (1 - p), 1e-12) / (n / K))
        assert abs(measured - p) < 4 * sd + 0.01, f"{name}: class {k} changed at {measured:.3f}, configured {p}"


def test_label_smoothing_per_image_equals_each_image_smoothed_alone():
    logits = torch.randn(40, K, generator=gen(4))
    y = torch.arange(40) % K
    eps = torch.tensor([0.0, 0.0, 0.3, 0.1]).repeat(10)
    per_image = cross_entropy(logits, y, eps, reduction="none")
    alone = torch.stack([F.cross_entropy(logits[i:i + 1], y[i:i + 1], label_smoothing=float(eps[i]))
                         for i in range(40)])
    assert torch.allclose(per_image, alone, atol=1e-6)
    assert torch.allclose(cross_entropy(logits, y, eps), alone.mean(), atol=1e-6)


def test_class_weights_follow_the_last_epochs_training_accuracy():
    tally = torch.tensor([[9.0, 5.0, 0.0, 1.0], [10.0, 10.0, 10.0, 2.0]])
    w = class_weights("clam", tally, ["a", "b", "c", "d"], "cpu")
    expected = np.exp(-np.array([0.9, 0.5, 0.0, 0.5]))
    assert np.allclose(w.numpy(), expected / expected.mean())
    assert class_weights("clam", torch.zeros(2, 4), ["a", "b", "c", "d"], "cpu") is None  # first epoch
    fixed = class_weights({"b": 3.0}, None, ["a", "b", "c", "d"], "cpu")
    assert np.allclose(fixed.numpy(), np.array([1, 3, 1, 1]) / 1.5)
    assert class_weights(None, None, ["a"], "cpu") is None
    with pytest.raises(UsageError, match='train.class_weights names "z", which the data set does not have; its '
                                         'classes: a, b'):
        class_weights({"z": 2.0}, None, ["a", "b"], "cpu")


def test_weighted_loss_is_the_mean_of_weighted_image_losses_and_counts_right_answers():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, K))
    x, y = torch.randn(16, 3, 2, 2, generator=gen(6)), torch.arange(16) % K
    weights, tally = torch.tensor([2.0, 1.0, 0.5, 0.5]), torch.zeros(2, K)
    loss = _loss(model, x, y, {}, torch.device("cpu"), ByClass(y, {}, weights, tally))
    logits = model(x.contiguous(memory_format=torch.channels_last))
    expected = (F.cross_entropy(logits, y, reduction="none") * weights[y]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    right = (logits.argmax(1) == y).float()
    assert torch.equal(tally[0], torch.zeros(K).index_add_(0, y, right)) and torch.equal(tally[1], torch.full((K,), 4.0))


def test_class_strengths_table():
    regs = {"crop": {"strength": 0.5, "start_epoch": 0, "class_strength": {"b": 1.0}},
            "cutmix": {"strength": 0.5, "start_epoch": 0}}
    tables = class_strengths(regs, ["a", "b", "c"], "cpu")
    assert list(tables) == ["crop"] and tables["crop"].tolist() == [0.5, 1.0, 0.5]
    with pytest.raises(UsageError, match='regularizer crop: class_strength names "z", which the data set does not '
                                         'have; its classes: a, b, c'):
        class_strengths({"crop": {**regs["crop"], "class_strength": {"z": 1.0}}}, ["a", "b", "c"], "cpu")


# ----------------------------------------------------------------------------------------------------------
# The study fields


BASE = tomllib.loads(TINY_STUDY)


def with_axis(**fields):
    raw = json.loads(json.dumps(BASE))
    raw["sweep"]["cj"] = {"regularizer": "color_jitter", "strengths": [0.0, 1.0], **fields}
    return raw


def error_of(raw) -> str:
    with pytest.raises(UsageError) as info:
        parse_study(raw, "s.toml")
    return str(info.value)


CLASSES = "red, yellow, green, square, wide, tall, shallow, steep, stripes, checker"


@pytest.mark.parametrize("fields, message", [
    ({"exempt": ["gren"]},
     f"s.toml: field 'sweep.cj.exempt[0]': class \"gren\" is not a class of shapes (did you mean \"green\"?); "
     f"classes: {CLASSES}"),
    ({"exempt": []}, "s.toml: field 'sweep.cj.exempt': value [] is not allowed; expected a non-empty list of class "
                     "names, e.g. [\"cat\", \"dog\"]"),
    ({"exempt": ["red", "red"]}, "s.toml: field 'sweep.cj.exempt': class \"red\" appears more than once"),
    ({"class_strength": {"red": 3.0}},
     "s.toml: field 'sweep.cj.class_strength.red': value 3.0 is out of range for color_jitter; allowed: 0 <= s <= "
     "2.5 (SimCLR strength s: brightness, contrast, saturation 0.8 s; hue 0.2 s; off = 0)"),
    ({"exempt": ["red"], "class_strength": {"red": 0.5}},
     "s.toml: field 'sweep.cj.class_strength.red': class \"red\" is also exempt; give it in one of exempt and "
     "class_strength"),
    ({"class_weights": "adaptive"},
     "s.toml: field 'sweep.cj.class_weights': value \"adaptive\" is not allowed; expected \"clam\" (adaptive: "
     "weights from each class's training accuracy) or a table of class name = weight > 0, e.g. {cat = 2.0}"),
    ({"class_weights": {"red": 0}},
     "s.toml: field 'sweep.cj.class_weights.red': value 0 is not allowed; expected a number > 0 (the class's "
     "weight on the loss; classes not named weigh 1)"),
    ({"class_weights": {"rd": 2.0}},
     "s.toml: field 'sweep.cj.class_weights.rd': class \"rd\" is not a class of shapes (did you mean \"red\"?); "
     f"classes: {CLASSES}"),
])
def test_bad_class_conditional_fields_get_one_message_each(fields, message):
    assert error_of(with_axis(**fields)) == message


def test_class_conditional_strengths_are_refused_where_they_cannot_act():
    raw = json.loads(json.dumps(BASE))
    raw["sweep"]["weight_decay"] = {"strengths": [0.0, 0.001], "exempt": ["red"]}
    assert error_of(raw) == (
        "s.toml: field 'sweep.weight_decay.exempt': value [\"red\"] is not allowed for weight_decay, which acts on "
        "the whole model or optimizer, not image by image; classes can have their own strength with: translate, "
        "crop, color_jitter, random_erasing, cutmix, mixup, label_smoothing")
    own = {"study": {"name": "own", "seeds": [0]}, "train": {"command": ["python", "t.py", "{out}"]},
           "sweep": {"crop": {"strengths": [1.0, 0.5], "exempt": ["cat"]}}}
    assert error_of(own) == (
        "s.toml: field 'sweep.crop': exempt or class_strength is not allowed with your own training code, which is "
        "told one strength per run; class-conditional remedies need classaudit's own training")


def test_remedy_axes_share_the_off_run_and_leave_other_ids_alone():
    plain = {r.run_id for r in expand(parse_study(BASE, "s.toml"))}
    runs = expand(parse_study(with_axis(exempt=["red"], class_weights="clam"), "s.toml"))
    ids = {r.run_id for r in runs}
    assert plain < ids, "every run of the study without the axis keeps its id"
    remedied = [r for r in runs if r.config["regularizers"].get("color_jitter")]
    assert len(remedied) == 2 and all(r.config["regularizers"]["color_jitter"] == {
        "strength": 1.0, "start_epoch": 0, "class_strength": {"red": 0.0}} for r in remedied)
    assert all(r.config["train"]["class_weights"] == "clam" for r in remedied)
    assert remedied[0].label == "color_jitter=1, exempt(red), class_weights(clam) seed=0"
    assert not any("class_weights" in r.config["train"] for r in runs if r not in remedied)


# ----------------------------------------------------------------------------------------------------------
# classaudit remedy


COMMITTED = ROOT / "reports" / "cifar10" / "results"


@pytest.mark.parametrize("options, harmed, expected_axes", [
    (["--regularizer", "weight_decay", "--strength", "0.005"], "weight_decay at 0.005 harms", ["weight_decay_clam"]),
    (["--regularizer", "color_jitter", "--strength", "1.5", "--remedies", "exempt"], "color_jitter at 1.5 harms",
     ["color_jitter_exempt"]),
])
def test_remedy_of_the_committed_study_reuses_every_run(tmp_path, runner, options, harmed, expected_axes):
    from classaudit.cli import cli

    out = tmp_path / "remedy.toml"
    result = runner.invoke(cli, ["remedy", str(COMMITTED), "--study", str(ROOT / "studies" / "cifar10_cpu.toml"),
                                 "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    assert harmed in result.output
    results = tmp_path / "results"
    shutil.copytree(COMMITTED, results)
    dry = runner.invoke(cli, ["sweep", str(out), "--results", str(results), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    study = load_study(out)
    done = set(json.loads((COMMITTED / "study.json").read_text())["runs"])
    new = [r for r in expand(study) if r.run_id not in done]
    seeds = len(study.seeds)
    axes = [a.name for a in study.axes if a.name.endswith(("_exempt", "_own", "_clam"))]
    assert axes == expected_axes
    assert len(new) == seeds * len(axes), "only the remedies' runs are new"
    assert f"{len(new)} to train, {len(done)} finished" in dry.output


@pytest.mark.parametrize("options, message", [
    (["--regularizer", "crop", "--strength", "0.3"],
     "Error: option --strength: value 0.3 is not a strength of crop in {results}; strengths: 1, 0.75, 0.5, 0.25, "
     "0.08"),
    (["--regularizer", "cropp"],
     "Error: option --regularizer: value \"cropp\" is not an axis of {results}; axes: color_jitter, crop, cutmix, "
     "weight_decay"),
    (["--strength", "0.5"], "Error: option --strength: give --regularizer too (the axis the strength is on)"),
    (["--regularizer", "crop", "--strength", "1"],
     "Error: option --strength: value 1 is the off point of crop, the reference a remedy is measured against; give "
     "a strength the regularizer is on at"),
    (["--regularizer", "weight_decay", "--strength", "0.005", "--remedies", "exempt,drop"],
     "Error: option --remedies: value \"exempt,drop\" is not allowed; expected one or more of exempt, own, clam, "
     "separated by commas"),
    (["--regularizer", "weight_decay", "--strength", "0.005", "--remedies", "exempt"],
     "Error: option --remedies: exempt writes nothing here: exempt and own act image by image (not on weight decay, "
     "dropout and the other whole-model regularizers), and own only where a harmed class is best at another "
     "strength; add clam"),
])
def test_remedy_usage_errors_write_nothing(tmp_path, runner, options, message):
    from classaudit.cli import cli

    out = tmp_path / "remedy.toml"
    result = runner.invoke(cli, ["remedy", str(COMMITTED), "--study", str(ROOT / "studies" / "cifar10_cpu.toml"),
                                 "--out", str(out), *options])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == message.format(results=COMMITTED)
    assert not out.exists()
