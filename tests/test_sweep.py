"""End to end through the CLI: a one-epoch sweep, resume, load_results, status, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from classaudit.cli import cli
from classaudit.store import ResultsFolder, load_predictions, load_results, load_runs


def sweep(runner, study, results, *extra):
    return runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--executor", "inprocess",
                               "--no-progress", *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny sweep, shared by the read-only tests below."""
    from click.testing import CliRunner

    from tests.conftest import TINY_STUDY

    tmp = tmp_path_factory.mktemp("sweep")
    study = tmp / "tiny.toml"
    study.write_text(TINY_STUDY)
    result = sweep(CliRunner(), study, tmp / "results")
    assert result.exit_code == 0, result.output
    return study, tmp / "results", result.output


def test_sweep_trains_every_run_and_prints_a_table(finished):
    _, results, output = finished
    assert "trained 6 run(s)" in output
    assert "Test accuracy per class" in output and "square" in output
    assert len(ResultsFolder(results).run_ids()) == 6


def test_load_results_rows_match_stored_predictions(finished):
    _, results, _ = finished
    frame = load_results(results)
    # 6 runs; the off run of each seed sits on both axes: (2 seeds x (2 axes x 2 strengths)) points x 2 splits
    # x 10 classes.
    assert len(frame) == 2 * 4 * 2 * 10
    assert list(frame.columns) == ["study", "run_id", "regularizer", "strength", "is_off", "seed", "split",
                                   "class_id", "class_name", "n", "correct", "accuracy"]
    preds = load_predictions(results)
    recomputed = (preds.assign(hit=preds["label"] == preds["pred"])
                  .groupby(["run_id", "regularizer", "strength", "split", "label"])["hit"].agg(["sum", "size"])
                  .reset_index())
    merged = frame.merge(recomputed, left_on=["run_id", "regularizer", "strength", "split", "class_id"],
                         right_on=["run_id", "regularizer", "strength", "split", "label"])
    assert len(merged) == len(frame)
    assert (merged["sum"] == merged["correct"]).all() and (merged["size"] == merged["n"]).all()
    assert np.allclose(merged["accuracy"], merged["sum"] / merged["size"])
    off = frame[frame["is_off"]]
    assert set(zip(off["regularizer"], off["strength"])) == {("crop", 1.0), ("cutmix", 0.0)}


def test_rerun_trains_nothing(finished, runner):
    study, results, _ = finished
    again = sweep(runner, study, results)
    assert again.exit_code == 0
    assert "all 6 runs are finished" in again.output and "nothing to train" in again.output


def test_status(finished, runner):
    _, results, _ = finished
    out = runner.invoke(cli, ["status", str(results)])
    assert out.exit_code == 0 and out.output.startswith("tiny: 6/6 done, 0 pending (0 failed), 0 damaged, 0 stale")


def test_resume_after_interruption_equals_uninterrupted(finished, runner, tmp_path):
    study, full, _ = finished
    partial = tmp_path / "partial"
    shutil.copytree(full, partial)
    folder = ResultsFolder(partial)
    removed = folder.run_ids()[:3]
    for rid in removed:  # as if the sweep had been killed before these finished
        shutil.rmtree(folder.runs_dir / rid)
    (folder.runs_dir / ".tmp-deadbeef-1").mkdir()  # a half-written run left by the kill
    out = sweep(runner, study, partial)
    assert out.exit_code == 0, out.output
    assert "trained 3 run(s)" in out.output and "3 already finished" in out.output
    assert not (folder.runs_dir / ".tmp-deadbeef-1").exists()
    pd.testing.assert_frame_equal(load_results(partial), load_results(full))


def test_same_run_same_result(finished, tmp_path, runner):
    """Training is seeded: the same study trained again gives identical predictions."""
    study, full, _ = finished
    other = tmp_path / "again"
    out = sweep(runner, study, other)
    assert out.exit_code == 0
    pd.testing.assert_frame_equal(load_predictions(other), load_predictions(full))


def test_damaged_record_is_detected_and_retrained(finished, runner, tmp_path):
    study, full, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(full, copy)
    rid = ResultsFolder(copy).run_ids()[0]
    record = copy / "runs" / rid / "record.json"
    body = json.loads(record.read_text())
    body["counts"]["test"]["correct"][0] += 1  # altered by hand
    record.write_text(json.dumps(body))
    status = runner.invoke(cli, ["status", str(copy)])
    assert f"damaged  {rid}" in status.output and "checksum mismatch" in status.output
    assert "(the next sweep re-trains it)" in status.output
    assert rid not in set(load_results(copy)["run_id"])
    study_json = json.loads((copy / "study.json").read_text())
    del study_json["runs"][rid]  # a study that no longer has this run: the sweep will not re-train it
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(copy, elsewhere)
    (elsewhere / "study.json").write_text(json.dumps(study_json))
    status = runner.invoke(cli, ["status", str(elsewhere)])
    assert f"damaged  {rid}" in status.output and "(not in the study: no sweep will re-train it)" in status.output
    out = sweep(runner, study, copy)
    assert "trained 1 run(s)" in out.output
    pd.testing.assert_frame_equal(load_results(copy), load_results(full))


def test_factorial_study_sweeps_reports_and_leaves_interaction_runs_out_of_the_analysis(runner, tmp_path):
    from tests.conftest import TINY_STUDY

    study = tmp_path / "factorial.toml"
    study.write_text(TINY_STUDY.replace("seeds = [0, 1]", "seeds = [0]\ndesign = \"factorial\""))
    results = tmp_path / "r"
    out = sweep(runner, study, results)
    assert out.exit_code == 0 and "trained 4 run(s)" in out.output, out.output  # 2 x 2, one with both on
    assert runner.invoke(cli, ["status", str(results)]).output.startswith("tiny: 4/4 done")
    frame = load_results(results)
    assert frame["run_id"].nunique() == 3  # the interaction run is on neither axis...
    runs = load_runs(results)
    assert len(runs) == 4 and (runs["axes"] == "").sum() == 1  # ...but listed with the runs
    report = runner.invoke(cli, ["report", str(results), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output


def test_status_verbose_lists_every_run(finished, runner):
    _, results, _ = finished
    lines = runner.invoke(cli, ["status", "-v", str(results)]).output.splitlines()
    assert len([line for line in lines if line.startswith("  done     ")]) == 6


def test_finished_sweep_of_another_study_version_makes_it_the_folders_study(finished, runner, tmp_path):
    # The folder holds epochs=1 runs; a sweep of epochs=2 is trained into it, then the epochs=1 study is swept
    # again: nothing to train, but from then on status and report read the epochs=1 runs, as the table does.
    study, full, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(full, copy)
    assert sweep(runner, study, copy, "--epochs", "2").exit_code == 0
    assert runner.invoke(cli, ["status", str(copy)]).output.startswith("tiny: 6/6 done, 0 pending (0 failed), "
                                                                       "0 damaged, 6 stale")
    again = sweep(runner, study, copy)
    assert again.exit_code == 0 and "nothing to train" in again.output
    status = runner.invoke(cli, ["status", str(copy)]).output
    assert status.startswith("tiny: 6/6 done, 0 pending (0 failed), 0 damaged, 6 stale")
    pd.testing.assert_frame_equal(load_results(copy), load_results(full))


def test_damaged_record_outside_the_study_is_not_announced_as_retrained(finished, runner, tmp_path):
    study, full, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(full, copy)
    assert sweep(runner, study, copy, "--epochs", "2").exit_code == 0  # the epochs=1 runs are now stale
    stale = ResultsFolder(full).run_ids()[0]
    (copy / "runs" / stale / "record.json").write_text("{")
    for extra in (("--dry-run",), ()):
        out = sweep(runner, study, copy, "--epochs", "2", *extra)
        assert out.exit_code == 0 and "re-train" not in out.output, out.output


@pytest.mark.parametrize("options, message", [
    (("--gpus-per-run", "1"), "option --gpus-per-run: only for --executor ray or slurm; leave it out with "
                              "--executor local"),
    (("--partition", "gpu"), "option --partition: only for --executor slurm; leave it out with --executor local"),
    (("--address", "auto"), "option --address: only for --executor ray; leave it out with --executor local"),
    (("--cpus-per-run", "0.5"), "option --cpus-per-run: value 0.5 is not a whole number >= 1; with --executor "
                                "local it is each run's torch thread count"),
    (("--executor", "slurm", "--address", "auto"), "option --address: only for --executor ray; leave it out with "
                                                   "--executor slurm"),
    (("--executor", "ray", "--partition", "gpu"), "option --partition: only for --executor slurm; leave it out "
                                                  "with --executor ray"),
])
def test_executor_options_are_checked_before_data_and_by_a_dry_run(tiny_study, runner, tmp_path, monkeypatch,
                                                                    options, message):
    import classaudit.train

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was loaded before the options were checked")

    monkeypatch.setattr(classaudit.train, "get_dataset", no_data)
    for dry in (("--dry-run",), ()):
        out = runner.invoke(cli, ["sweep", str(tiny_study), "--results", str(tmp_path / "r"), *options, *dry])
        assert out.exit_code == 2 and out.output == f"Error: {message}\n", out.output
        assert not (tmp_path / "r").exists()


def test_cpus_per_run_sets_the_threads_of_a_local_run(tiny_study, runner, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        out = sweep(runner, tiny_study, tmp_path / "r", "--cpus-per-run", "1", "--set", "study.seeds=[0]",
                    "--set", "sweep.cutmix.strengths=[0.5]", "--set", "sweep.crop.strengths=[0.5]")
    finally:
        torch.set_num_threads(before)
    assert out.exit_code == 0, out.output
    threads = {ResultsFolder(tmp_path / "r").read_record(rid)["environment"]["threads"]
               for rid in ResultsFolder(tmp_path / "r").run_ids()}
    assert threads == {1}


def test_dry_run_of_a_study_over_max_runs_says_the_sweep_will_ask(tiny_study, runner, tmp_path):
    out = runner.invoke(cli, ["sweep", str(tiny_study), "--results", str(tmp_path / "r"), "--dry-run",
                              "--set", "study.max_runs=5"])
    assert out.exit_code == 0 and "6 runs, more than study.max_runs = 5: the sweep will ask for --yes" in out.output
    out = runner.invoke(cli, ["sweep", str(tiny_study), "--results", str(tmp_path / "r"), "--set", "study.max_runs=5"])
    assert out.exit_code == 2 and "pass --yes" in out.output and not (tmp_path / "r").exists()


def test_finished_study_over_max_runs_needs_no_yes(finished, runner):
    study, results, _ = finished
    for extra in (("--dry-run",), ()):
        out = sweep(runner, study, results, "--set", "study.max_runs=2", *extra)
        assert out.exit_code == 0 and "--yes" not in out.output, out.output


def test_a_seed_count_meant_as_a_seed_is_refused_before_it_is_expanded(tiny_study, runner, tmp_path):
    out = runner.invoke(cli, ["sweep", str(tiny_study), "--results", str(tmp_path / "r"),
                              "--set", "study.seeds=20240101"])
    assert out.exit_code == 2 and not (tmp_path / "r").exists()
    assert ("the study expands to 60720303 runs, more than study.max_runs = 500 (study.seeds = 20240101 is a "
            "count, seeds 0..20240100; for that one seed write seeds = [20240101]); pass --yes") in out.output


def test_a_broken_pipe_that_is_not_stdout_is_an_error(finished, runner, monkeypatch):
    import classaudit.report

    def broken(*args, **kwargs):
        raise BrokenPipeError("to a worker")

    monkeypatch.setattr(classaudit.report, "write_report", broken)
    _, results, _ = finished
    out = runner.invoke(cli, ["report", str(results)])
    assert out.exit_code == 1 and "Error: BrokenPipeError: to a worker" in out.output, out.output


def test_output_into_a_closed_pipe_ends_quietly(finished):
    import os
    import subprocess
    import sys

    _, results, _ = finished
    # As `classaudit status -v R | head -1` once head has gone: a pipe whose reading end is closed.
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "classaudit.cli", "status", "-v", str(results)], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.stderr == "" and done.returncode == 141, done.stderr


def test_set_and_epochs_override_the_study_and_change_the_run_ids(tiny_study, runner, tmp_path):
    def ids(*extra):
        out = runner.invoke(cli, ["sweep", str(tiny_study), "--results", str(tmp_path / "r"), "--dry-run", *extra])
        assert out.exit_code == 0, out.output
        return {line.split()[0] for line in out.output.splitlines()[1:]}

    plain, longer = ids(), ids("--epochs", "3")
    assert len(plain) == len(longer) == 6 and plain.isdisjoint(longer)
    assert ids("--set", "train.epochs=3") == longer
    out = runner.invoke(cli, ["sweep", str(tiny_study), "--dry-run", "--set", "train.epochs=-1"])
    assert out.exit_code == 2 and "train.epochs" in out.output


def test_retries_try_a_failing_run_again_within_the_sweep(tiny_study, runner, tmp_path, monkeypatch):
    import classaudit.executors.base as executors

    real, calls = executors.execute_task, []

    def flaky(task):  # the first run always fails, as a run with bad data would
        calls.append(task.run_id)
        if task.label.startswith("baseline seed=0"):
            raise RuntimeError("bad batch")
        return real(task)

    monkeypatch.setattr(executors, "execute_task", flaky)
    out = sweep(runner, tiny_study, tmp_path / "r", "--retries", "2")
    assert out.exit_code == 1 and "trained 5 run(s)" in out.output and "1 failed" in out.output, out.output
    failed = next(iter(ResultsFolder(tmp_path / "r").failures().values()))
    assert failed["attempts"] == 3 and "RuntimeError: bad batch" in failed["error"]
    assert len(calls) == 6 + 2


def test_dry_run_writes_nothing(tiny_study, runner, tmp_path):
    out = runner.invoke(cli, ["sweep", str(tiny_study), "--results", str(tmp_path / "r"), "--dry-run"])
    assert out.exit_code == 0 and "6 runs, 6 to train" in out.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, message", [
    ("[study]\nname = 'x'\nseeds = 1\nbogus = 1\n[dataset]\nname='shapes'\n[model]\nname='smallcnn'\n"
     "[sweep.crop]\nstrengths=[0.5]\n",
     "field 'study.bogus': unknown key"),
    ("[study]\nname = 'x'\nseeds = 1\n[dataset]\nname='shapez'\n[model]\nname='smallcnn'\n"
     "[sweep.crop]\nstrengths=[0.5]\n",
     "field 'dataset.name': value \"shapez\" is not a known dataset (did you mean \"shapes\"?)"),
    ("[study]\nname = 'x'\nseeds = 1\n[dataset]\nname='shapes'\n[model]\nname='smallcnn'\n"
     "[sweep.crop]\nstrengths=[-1]\n",
     "field 'sweep.crop.strengths[0]': value -1 is out of range for crop"),
])
def test_bad_study_exits_2_with_one_message_and_writes_nothing(tmp_path, runner, content, message):
    study = tmp_path / "bad.toml"
    study.write_text(content)
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert message in out.output and "Traceback" not in out.output
    assert out.output.startswith("Error: ") and out.output.count("Error:") == 1
    assert not (tmp_path / "r").exists()


def test_missing_study_file(runner, tmp_path):
    out = runner.invoke(cli, ["sweep", str(tmp_path / "nope.toml")])
    assert out.exit_code == 2 and f"Error: {tmp_path / 'nope.toml'}: no such study file" in out.output


def test_results_folder_that_is_a_file(tiny_study, runner, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    out = runner.invoke(cli, ["sweep", str(tiny_study), "--results", str(f)])
    assert out.exit_code == 2 and "results folder is a file" in out.output


def test_second_sweep_into_a_locked_folder_is_refused(tiny_study, runner, tmp_path, monkeypatch):
    import classaudit.train

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was loaded before the lock was checked")

    monkeypatch.setattr(classaudit.train, "get_dataset", no_data)
    results = tmp_path / "r"
    with ResultsFolder(results).lock():
        out = sweep(runner, tiny_study, results)
    assert out.exit_code == 2
    assert "another sweep is writing to this results folder (pid" in out.output
    assert sorted(p.name for p in results.iterdir()) == [".lock"]


def test_listings(runner):
    out = runner.invoke(cli, ["regularizers"])
    assert out.exit_code == 0 and "crop" in out.output and "off = 1" in out.output
    assert "shapes" in runner.invoke(cli, ["datasets"]).output
    assert "smallcnn" in runner.invoke(cli, ["models"]).output
    for command in ("sweep", "report", "status", "regularizers", "datasets", "models"):
        out = runner.invoke(cli, [command, "--help"])
        assert out.exit_code == 0 and f"classaudit {command}" in out.output.split("Example")[1], command
    everything = runner.invoke(cli, ["models", "--all"]).output
    assert "torchvision classifiers: " in everything and "resnet50" in everything


def test_the_plan_classifies_the_folder_as_status_does_and_the_sweep_trains_its_todo(finished, runner, tmp_path):
    """One plan: the runs a dry run lists are the plan's todo, and its state is `classaudit status`'s, entry for
    entry (done, pending, failed, damaged, stale)."""
    from classaudit.config import load_study
    from classaudit.store import status
    from classaudit.sweep import plan, record_study

    study_file, full, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(full, copy)
    ids = ResultsFolder(copy).run_ids()
    (copy / "runs" / ids[0] / "record.json").write_text("{")  # damaged: re-trained
    shutil.rmtree(copy / "runs" / ids[1])  # missing: pending
    the_plan = plan(load_study(study_file), copy)
    assert sorted(r.run_id for r in the_plan.todo) == sorted(ids[:2]) and the_plan.refusal is None
    assert list(the_plan.corrupt) == [ids[0]] and the_plan.stale == []
    record_study(the_plan)
    assert status(copy) == the_plan.state
    out = sweep(runner, study_file, copy, "--dry-run")
    listed = [line.split()[0] for line in out.output.splitlines() if line.startswith("  ") and "damaged" not in line]
    assert sorted(listed) == sorted(ids[:2]), out.output
    # Another study version: every old run is stale, in the plan as in status.
    longer = plan(load_study(study_file, ["train.epochs=2"]), copy)
    assert sorted(longer.stale) == sorted(ids[2:]) and len(longer.todo) == 6


def test_a_plan_over_max_runs_refuses_before_expanding(tiny_study, tmp_path):
    from classaudit.config import load_study
    from classaudit.errors import UsageError
    from classaudit.sweep import plan

    huge = plan(load_study(tiny_study, ["study.seeds=20240101"]), tmp_path / "r")
    assert huge.runs == [] and huge.n_runs == 3 * 20240101
    with pytest.raises(UsageError, match="the study expands to 60720303 runs"):
        huge.check_size()
    assert not (tmp_path / "r").exists()
