"""Transfer: the [transfer] table (messages asserted exactly), the probe, its storage with the run, a finished
study gaining its probe without training, the downstream view of the analysis, and a torchvision backbone's path."""

from __future__ import annotations

import hashlib
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch

import classaudit as ca
from classaudit.cli import cli
from classaudit.config import expand, parse_study, resolve_transfer
from classaudit.errors import UsageError
from tests.conftest import TINY_STUDY
from tests.test_config import _DELETE, study_with

TRANSFER = """
[transfer.dataset]
name = "shapes_downstream"
val_fraction = 0.25
[transfer.dataset.options]
n_train_per_class = 12
n_test_per_class = 6
size = 16
[transfer.probe]
l2 = [0.01, 1.0]
max_iter = 20
"""
TRANSFER_STUDY = TINY_STUDY.replace("seeds = [0, 1]", "seeds = [0]").split("[sweep.cutmix]")[0] + TRANSFER


def raw_with(**changes):
    """The transfer study with fields replaced; None deletes one."""
    return study_with(tomllib.loads(TRANSFER_STUDY), **{k: _DELETE if v is None else v for k, v in changes.items()})


def error_of(raw) -> str:
    with pytest.raises(UsageError) as info:
        parse_study(raw, "s.toml")
    return str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"transfer.dataset.name": "shapes_downstrem"},
     "s.toml: field 'transfer.dataset.name': value \"shapes_downstrem\" is not a known dataset (did you mean "
     "\"shapes_downstream\"?); allowed: cifar10, cifar100, fashion_mnist, imagefolder, mnist, shapes, "
     "shapes_downstream, svhn"),
    ({"transfer.dataset": None},
     "s.toml: field 'transfer.dataset': missing; expected a table [transfer.dataset] naming the downstream data set, "
     "e.g. name = \"shapes_downstream\""),
    ({"transfer.dataset.name": None},
     "s.toml: field 'transfer.dataset.name': missing; expected a string"),
    ({"transfer.dataset.name": "cifar10", "transfer.dataset.classes": [5, 6, 7, 8, 10],
      "transfer.dataset.options": {}},
     "s.toml: field 'transfer.dataset.classes': value [5, 6, 7, 8, 10] names class id 10, but cifar10 has 10 "
     "classes (ids 0 to 9); allowed: ids 0 to 9 or the names airplane, automobile, bird, cat, deer, dog, frog, "
     "horse, ship, truck"),
    ({"transfer.dataset.classes": ["orange", "lemon"]},
     "s.toml: field 'transfer.dataset.classes': value [\"orange\", \"lemon\"] names class \"lemon\", which "
     "shapes_downstream does not have; allowed: vermilion, orange, amber, gold, ring, cross, columns, dots"),
    ({"transfer.dataset.classes": [1]},
     "s.toml: field 'transfer.dataset.classes': value [1] is not allowed; expected a list of at least 2 distinct "
     "class ids (0, 1, ...) or class names"),
    ({"transfer.dataset.name": "imagefolder", "transfer.dataset.options": {}},
     "s.toml: field 'transfer.dataset.options.root': missing; expected a folder holding train/<class>/ and "
     "test/<class>/"),
    ({"transfer.dataset.options.sise": 16},
     "s.toml: field 'transfer.dataset.options.sise': unknown key (did you mean \"size\"?); allowed: "
     "n_test_per_class, n_train_per_class, seed, size"),
    ({"transfer.probe.l2": []},
     "s.toml: field 'transfer.probe.l2': value [] is not allowed; expected a non-empty list of distinct numbers >= 0 "
     "(L2 strengths of the probe, picked on transfer_val)"),
    ({"transfer.probe.c": 1.0},
     "s.toml: field 'transfer.probe.c': unknown key; allowed: l2, max_iter"),
    ({"transfer.dataset.val_fraction": 0.0},
     "s.toml: field 'transfer.dataset.val_fraction': value 0 is not allowed; the probe's L2 strength is chosen on "
     "the downstream validation split: expected a number with 0 < x <= 0.9"),
    ({"transfer.dataset.name": "mnist", "transfer.dataset.options": {}},
     "s.toml: field 'transfer.dataset.name': value \"mnist\" has 1-channel (grey) images, but the pre-training data "
     "set \"shapes\" has 3-channel (RGB) ones, which the backbone takes; probe on a data set of the same kind"),
    ({"transfer.model": "resnet18"},
     "s.toml: field 'transfer.model': unknown key; allowed: dataset, probe"),
])
def test_bad_transfer_tables_get_one_message_each(changes, message):
    assert error_of(raw_with(**changes)) == message


def test_a_bad_transfer_table_exits_2_and_writes_nothing(tmp_path, runner):
    study = tmp_path / "s.toml"
    study.write_text(TRANSFER_STUDY.replace('name = "shapes_downstream"', 'name = "shapes_down"'))
    results = tmp_path / "results"
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress"])
    assert out.exit_code == 2
    assert "field 'transfer.dataset.name': value \"shapes_down\" is not a known dataset" in out.output
    assert not results.exists()


def test_the_transfer_table_is_no_part_of_any_run_id():
    plain = parse_study(tomllib.loads(TRANSFER_STUDY.split("[transfer.dataset]")[0]), "s.toml")
    probed = parse_study(tomllib.loads(TRANSFER_STUDY), "s.toml")
    assert [r.run_id for r in expand(plain)] == [r.run_id for r in expand(probed)]
    assert resolve_transfer(plain) is None
    assert resolve_transfer(probed)["dataset"]["generator_version"] >= 1


def test_classes_selects_and_renumbers_a_data_sets_classes():
    from classaudit.data import load_dataset

    spec = {"name": "shapes_downstream", "classes": ["ring", 0], "val_fraction": 0.25,
            "options": {"n_train_per_class": 8, "n_test_per_class": 4, "size": 16}}
    data = load_dataset(spec)
    assert data.class_names == ("ring", "vermilion")
    assert sorted(set(data.test_y.tolist())) == [0, 1] and data.test_x.shape[0] == 8
    full = load_dataset({**spec, "classes": None})
    assert torch.equal(data.test_x[data.test_y == 0], full.test_x[full.test_y == 4])


def test_the_probe_recovers_a_linear_rule_and_picks_its_l2_on_validation():
    from classaudit.transfer import fit_probe, macro_accuracy

    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=g)
    y = (x @ torch.randn(5, 3, generator=g)).argmax(1)  # 3 classes with linear boundaries
    predict, chosen = fit_probe(x[:400], y[:400], x[400:500], y[400:500], 3, [10.0, 1e-3], 100)
    assert macro_accuracy(predict(x[500:]).argmax(1), y[500:], 3) > 0.9
    assert chosen["l2"] == 1e-3 and chosen["val_accuracy"]["0.001"] > chosen["val_accuracy"]["10"]
    # the same fit twice gives the same probabilities: no random draw anywhere
    again, _ = fit_probe(x[:400], y[:400], x[400:500], y[400:500], 3, [10.0, 1e-3], 100)
    assert torch.equal(predict(x[500:]), again(x[500:]))


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_finished_study_gains_its_probe_on_a_rerun_without_training(tmp_path, runner, monkeypatch):
    study = tmp_path / "s.toml"
    study.write_text(TRANSFER_STUDY)
    results = tmp_path / "results"
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", "--executor",
                              "inprocess"])
    assert out.exit_code == 0, out.output
    runs = sorted((results / "runs").iterdir())
    assert len(runs) == 2 and all((r / "model.pt").exists() for r in runs)
    assert all(len(list((r / "transfer").iterdir())) == 1 for r in runs)
    first = ca.load_results(results)
    assert set(first["split"]) == {"val", "test", "transfer_val", "transfer_test"}
    # A changed [transfer] table is a new probe, which the finished runs lack: the next sweep adds it from their
    # stored weights, without training (training would fail here), and touches none of their files.
    study.write_text(TRANSFER_STUDY.replace("l2 = [0.01, 1.0]", "l2 = [0.1]"))
    before = _digests(results / "runs")
    monkeypatch.setattr("classaudit.train.train_one", lambda *a, **k: pytest.fail("a finished run was trained"))
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", "--dry-run"])
    assert "2 to train" not in out.output and out.output.count("probe only, from its stored weights") == 2
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", "--executor",
                              "inprocess"])
    assert out.exit_code == 0, out.output
    assert "probed 2 finished run(s) without training" in out.output
    after = _digests(results / "runs")
    assert {k: v for k, v in after.items() if k in before} == before  # every file there before is unchanged
    assert len(after) == len(before) + 4  # a record and the predictions of each run's new probe
    second = ca.load_results(results)
    upstream = first[~first["split"].str.startswith("transfer")]
    pd.testing.assert_frame_equal(second[~second["split"].str.startswith("transfer")], upstream)
    assert len(second[second["split"] == "transfer_test"]) == len(first[first["split"] == "transfer_test"])
    out = runner.invoke(cli, ["status", str(results)])
    assert "downstream probe" not in out.output
    # The probe, lost (a damaged folder is the same), comes back as it was.
    for run in runs:
        for probe in (run / "transfer").iterdir():
            import shutil

            shutil.rmtree(probe)
    out = runner.invoke(cli, ["status", str(results)])
    assert "2 finished run(s) have no downstream probe yet" in out.output
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", "--executor",
                              "inprocess"])
    assert "probed 2 finished run(s) without training" in out.output
    pd.testing.assert_frame_equal(ca.load_results(results), second)
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress"])
    assert "nothing to train" in out.output


def test_a_finished_run_without_weights_trains_again_for_its_probe(tmp_path, runner):
    study = tmp_path / "s.toml"
    study.write_text(TRANSFER_STUDY.split("[transfer.dataset]")[0])
    results = tmp_path / "results"
    assert runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress"]).exit_code == 0
    ids = sorted(p.name for p in (results / "runs").iterdir())
    assert not (results / "runs" / ids[0] / "model.pt").exists()
    study.write_text(TRANSFER_STUDY)
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", "--dry-run"])
    assert "2 to train" in out.output
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (results / "runs").iterdir()) == ids  # the same runs, now with their probe
    assert (results / "runs" / ids[0] / "model.pt").exists()
    assert "transfer_test" in set(ca.load_results(results)["split"])


def _frames(harm_on_hue: bool):
    """A two-strength sweep's results with a downstream task whose class 0 loses at the strong strength."""
    rows = []
    for seed in range(4):
        for strength in (0.0, 2.0):
            for split, classes in (("val", ("a", "b")), ("test", ("a", "b")), ("transfer_val", ("x", "y", "z")),
                                   ("transfer_test", ("x", "y", "z"))):
                for k, name in enumerate(classes):
                    correct = 90 + seed
                    if split.startswith("transfer") and k == 0 and strength and harm_on_hue:
                        correct = 40 + seed
                    if split == "val" and strength:
                        correct += 5  # upstream validation prefers the strong strength
                    rows.append({"study": "s", "run_id": f"{strength}-{seed}", "regularizer": "color_jitter",
                                 "strength": strength, "is_off": strength == 0.0, "seed": seed, "split": split,
                                 "class_id": k, "class_name": name, "n": 100, "correct": correct,
                                 "accuracy": correct / 100})
    return pd.DataFrame(rows)


def test_the_downstream_view_chosen_upstream_and_downstream():
    results = _frames(harm_on_hue=True)
    audit = ca.Audit(results)
    assert audit.class_names == {0: "a", 1: "b"}  # the study's own task, not the probe's classes
    upstream = audit.transfer()
    assert upstream.class_names == {0: "x", 1: "y", 2: "z"}
    assert upstream.chosen_strength("color_jitter") == 2.0  # upstream validation likes the strong strength
    diff = upstream.difference()
    assert diff.set_index("class_name")["harmed"].to_dict() == {"x": True, "y": False, "z": False}
    downstream = audit.transfer(select_on="transfer_val")
    assert downstream.chosen_strength("color_jitter") == 0.0  # the downstream task would keep it off
    assert not downstream.difference()["harmed"].any()
    assert downstream.difference(strength=2.0)["harmed"].sum() == 1
    with pytest.raises(ca.AnalysisError, match="has no downstream probe splits"):
        ca.Audit(results[~results["split"].str.startswith("transfer")]).transfer()


def test_the_report_of_the_downstream_view_says_which_view_it_shows():
    from classaudit.report import render_report

    page = render_report(ca.Audit(_frames(harm_on_hue=True)).transfer())["index.html"]
    assert "This page shows the downstream task" in page
    assert "chosen on the upstream validation split" in page
    assert "each class&#39;s own best strength is picked on it" in page
    page = render_report(ca.Audit(_frames(harm_on_hue=True)).transfer("transfer_val"))["index.html"]
    assert "chosen on the downstream validation split" in page


@pytest.mark.slow
def test_a_torchvision_backbone_is_probed_the_same_way(tmp_path, runner):
    """resnet18 with random weights (pretrained = false: nothing is downloaded here); on users' machines
    pretrained = true starts from ImageNet's weights and is probed the same way."""
    study = tmp_path / "s.toml"
    study.write_text(TRANSFER_STUDY.replace('name = "smallcnn"', 'name = "resnet18"')
                     .replace("width = 4", "pretrained = false"))
    results = tmp_path / "results"
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", "--executor",
                              "inprocess"])
    assert out.exit_code == 0, out.output
    frame, predictions = ca.load_results(results), ca.load_predictions(results)
    test = frame[frame["split"] == "transfer_test"]
    assert sorted(test["class_name"].unique()) == sorted(["vermilion", "orange", "amber", "gold", "ring", "cross",
                                                          "columns", "dots"])
    record = next((results / "runs").iterdir()) / "transfer"
    probe = next(record.iterdir()) / "record.json"
    import json

    assert json.loads(probe.read_text())["timings"]["feature_dim"] == 512  # resnet18's pooled features
    assert np.isfinite(test["accuracy"]).all()
    # Probed again from the stored weights (the model rebuilt without downloading anything): the same predictions.
    import shutil

    for run in (results / "runs").iterdir():
        shutil.rmtree(run / "transfer")
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", "--executor",
                              "inprocess"])
    assert "probed 2 finished run(s) without training" in out.output
    pd.testing.assert_frame_equal(ca.load_predictions(results), predictions)
