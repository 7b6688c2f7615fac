"""Reliability: SIGKILL anywhere and resume; one writer per folder; a changed study; a full disk; and a battery
of malformed or hostile study files and folders, each giving one clear message and writing nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from classaudit.cli import cli
from classaudit.store import ResultsFolder, load_predictions, load_results
from tests.conftest import TINY_STUDY

CLASSAUDIT = [sys.executable, "-m", "classaudit.cli"]


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([*CLASSAUDIT, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stored(results: Path) -> int:
    runs = results / "runs"
    return len([p for p in runs.iterdir() if not p.name.startswith(".")]) if runs.is_dir() else 0


def _writing(results: Path) -> bool:
    runs = results / "runs"
    return runs.is_dir() and any(p.name.startswith(".tmp-") for p in runs.iterdir())


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(tmp_path):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY_STUDY.replace("seeds = [0, 1]", "seeds = 3"))  # 9 runs
    reference = tmp_path / "reference"
    done = run_cli("sweep", study, "--results", reference, "--executor", "inprocess", "--no-progress")
    assert done.wait(timeout=600) == 0, done.stderr.read()

    # Kills are tied to events, not to a clock, so they land where intended on a fast or a slow machine:
    # during start-up, during training (just after a run was stored), and during a write (a .tmp- run folder).
    results = tmp_path / "killed"
    rng = random.Random(0)
    moments = []
    for attempt in range(30):
        mode = ("start-up", "training", "write")[attempt % 3]
        before = _stored(results)
        proc = run_cli("sweep", study, "--results", results, "--executor", "inprocess", "--no-progress")
        deadline = time.monotonic() + (rng.uniform(0.2, 2.0) if mode == "start-up" else 300)
        while proc.poll() is None and time.monotonic() < deadline:
            if mode == "write" and _writing(results):
                break
            if mode != "start-up" and _stored(results) > before:  # a write finished: kill in the next training
                mode = "training"
                time.sleep(rng.uniform(0.0, 0.2))
                break
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            moments.append(mode)
        proc.wait(timeout=600)
        # Whatever is readable is whole: every stored run verifies, nothing half-written counts as a run.
        if results.exists():
            assert not ResultsFolder(results).verified_runs()[1]
        if proc.returncode == 0:
            break
    final = run_cli("sweep", study, "--results", results, "--executor", "inprocess", "--no-progress")
    assert final.wait(timeout=600) == 0, final.stderr.read()
    assert {"start-up", "training"} <= set(moments) and len(moments) >= 4, moments
    folder = ResultsFolder(results)
    assert sorted(folder.run_ids()) == sorted(ResultsFolder(reference).run_ids())  # none missing, none extra
    assert not list(folder.runs_dir.glob(".tmp-*"))
    pd.testing.assert_frame_equal(load_results(results), load_results(reference))
    pd.testing.assert_frame_equal(load_predictions(results), load_predictions(reference))


def test_live_lock_names_its_holder_and_a_dead_holder_frees_it(tmp_path):
    results = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from classaudit.store import ResultsFolder\n"
        "with ResultsFolder(%r).lock():\n"
        "    print('locked', flush=True); time.sleep(60)\n") % (str(Path(__file__).resolve().parents[1]), str(results))],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    from classaudit.errors import UsageError

    with pytest.raises(UsageError, match=rf"another sweep is writing to this results folder \(pid {holder.pid} on"):
        with ResultsFolder(results).lock():
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with ResultsFolder(results).lock():  # the kernel dropped the dead holder's lock: taken over at once
        pass


def test_changed_study_marks_old_runs_stale_and_never_mixes_them(tmp_path, runner):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY_STUDY)
    results = tmp_path / "r"
    assert runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--executor", "inprocess",
                               "--no-progress"]).exit_code == 0
    before = set(load_results(results)["run_id"])
    study.write_text(TINY_STUDY.replace("strengths = [1.0, 0.5]", "strengths = [1.0, 0.25]"))
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--executor", "inprocess",
                              "--no-progress"])
    assert out.exit_code == 0
    assert "2 finished run(s) in" in out.output and "belong to an earlier version of the study" in out.output
    after = load_results(results)
    assert set(after.query("regularizer == 'crop'")["strength"]) == {1.0, 0.25}
    assert len(before - set(after["run_id"])) == 2  # the crop=0.5 runs are kept on disk, not used
    status = runner.invoke(cli, ["status", str(results)])
    assert status.output.count("stale    ") == 2


def test_full_disk_stops_cleanly_and_keeps_finished_runs(tmp_path, runner, monkeypatch):
    import errno

    from classaudit import store

    study = tmp_path / "tiny.toml"
    study.write_text(TINY_STUDY)
    results = tmp_path / "r"
    real = store.durable_write
    calls = {"n": 0}

    def failing(path, data):
        calls["n"] += 1
        if calls["n"] > 6:  # two whole runs (3 files each), then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(store, "durable_write", failing)
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--executor", "inprocess",
                              "--no-progress"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert "cannot store run" in out.output and "No space left on device" in out.output
    assert "the 2 finished runs are kept" in out.output
    folder = ResultsFolder(results)
    good, bad = folder.verified_runs()
    assert len(good) == 2 and not bad and not list(folder.runs_dir.glob(".tmp-*"))
    monkeypatch.setattr(store, "durable_write", real)
    again = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--executor", "inprocess",
                                "--no-progress"])
    assert again.exit_code == 0 and "trained 4 run(s)" in again.output


def test_unwritable_results_folder(tmp_path, runner, monkeypatch):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY_STUDY)
    real_open = os.open

    def deny(path, *a, **k):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(tmp_path / "r"), "--executor", "inprocess"])
    assert out.exit_code == 2
    assert "cannot write to the results folder (Permission denied)" in out.output


def test_huge_grid_needs_confirmation(tmp_path, runner, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("the data set was loaded before the size check")

    monkeypatch.setattr("classaudit.train.get_dataset", no_download)
    study = tmp_path / "big.toml"
    grid = ", ".join(str(round(0.05 + i * 0.009, 3)) for i in range(100))
    study.write_text(TINY_STUDY.replace("strengths = [1.0, 0.5]", f"strengths = [{grid}]")
                     .replace("seeds = [0, 1]", "seeds = 6"))
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert "the study expands to 612 runs, more than study.max_runs = 500; pass --yes" in out.output
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------------------
# The bad-input battery: each case is a study file (or folder) and the words its one message must contain.

GOOD = TINY_STUDY


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


BATTERY = {
    "unknown key with did-you-mean": (replace("epochs = 1", "epoch = 1"), "field 'train.epoch': unknown key (did you mean \"epochs\"?)"),
    "unknown top-level table": (GOOD + "\n[trian]\nepochs = 2\n", "field 'trian': unknown key (did you mean \"train\"?)"),
    "wrong type for a number": (replace("epochs = 1", "epochs = \"one\""), "field 'train.epochs': value \"one\" has the wrong type"),
    "bool for a number": (replace("lr = 0.05", "lr = true"), "field 'train.lr': value true has the wrong type"),
    "negative epochs": (replace("epochs = 1", "epochs = -1"), "field 'train.epochs': value -1 is not allowed"),
    "empty grid": (replace("strengths = [1.0, 0.5]", "strengths = []"), "field 'sweep.crop.strengths': value [] is not allowed"),
    "nan strength": (replace("strengths = [1.0, 0.5]", "strengths = [nan]"), "field 'sweep.crop.strengths[0]': value nan is out of range"),
    "infinite strength": (replace("strengths = [0.0, 0.5]", "strengths = [inf]"), "field 'sweep.cutmix.strengths[0]': value inf is out of range"),
    "negative strength": (replace("strengths = [0.0, 0.5]", "strengths = [-0.5]"), "value -0.5 is out of range for cutmix"),
    "duplicate strengths": (replace("strengths = [1.0, 0.5]", "strengths = [0.5, 0.5]"), "value 0.5 appears more than once"),
    "strength as string": (replace("strengths = [1.0, 0.5]", "strengths = [\"0.5\"]"), "value \"0.5\" has the wrong type"),
    "grid not a list": (replace("strengths = [1.0, 0.5]", "strengths = 0.5"), "field 'sweep.crop.strengths': value 0.5 has the wrong type"),
    "unknown regularizer": (replace("[sweep.crop]", "[sweep.crpo]"), "field 'sweep.crpo': value \"crpo\" is not a known regularizer (did you mean \"crop\"?)"),
    "unknown dataset": (replace("name = \"shapes\"", "name = \"cifar-10\""), "value \"cifar-10\" is not a known dataset (did you mean \"cifar10\"?)"),
    "unknown model": (replace("name = \"smallcnn\"", "name = \"smallcn\""), "value \"smallcn\" is not a known model (did you mean \"smallcnn\"?)"),
    "unknown optimizer": (replace("lr = 0.05", "lr = 0.05\noptimizer = \"adam\""), "value \"adam\" is not allowed; expected one of \"sgd\", \"adamw\""),
    "start epoch past the end": (replace("strengths = [1.0, 0.5]", "strengths = [1.0, 0.5]\nstart_epoch = 5"), "field 'sweep.crop.start_epoch': value 5 is not allowed"),
    "fractional pixels": (replace("[sweep.crop]", "[baseline]\ntranslate = 1.5\n\n[sweep.crop]"), "field 'baseline.translate': value 1.5 is out of range for translate; allowed: 0 <= s <= 64, a whole number"),
    "duplicate seeds": (replace("seeds = [0, 1]", "seeds = [1, 1]"), "seed 1 appears more than once"),
    "negative seed": (replace("seeds = [0, 1]", "seeds = [-1]"), "value -1 is not allowed; seeds are integers >= 0"),
    "no sweep": (GOOD.split("[sweep.crop]")[0], "field 'sweep': missing"),
    "study name with a path": (replace("name = \"tiny\"", "name = \"../../etc\""), "field 'study.name': value \"../../etc\" is not allowed"),
    "study name with markup": (replace("name = \"tiny\"", "name = \"<b>x</b>\""), "field 'study.name': value \"<b>x</b>\" is not allowed"),
    "axis name with a slash": (GOOD + "\n[sweep.\"a/b\"]\nregularizer = \"crop\"\nstrengths = [0.5]\n", "axis name \"a/b\" is not allowed"),
    "table where a value belongs": (replace("epochs = 1", "epochs = {n = 1}"), "field 'train.epochs': value {\"n\": 1} has the wrong type"),
    "not TOML": ("[study\nname = 'x'", "not valid TOML"),
    "not UTF-8": (b"[study]\nname = \"\xff\xfe\"\n", "not UTF-8 text"),
    "empty file": ("", "field 'study': missing"),
    "factorial with a repeated regularizer": (replace("[study]", "[study]\ndesign = \"factorial\"") + "\n[sweep.late]\nregularizer = \"crop\"\nstrengths = [0.5]\n", "regularizer \"crop\" appears on several axes"),
    "val fraction too large": (replace("val_fraction = 0.2", "val_fraction = 2"), "field 'dataset.val_fraction': value 2 is not allowed"),
    "image folder without root": (replace("name = \"shapes\"", "name = \"imagefolder\"").replace("n_train_per_class = 12\nn_test_per_class = 6\nsize = 16\n", ""), "field 'dataset.options.root': missing"),
}


@pytest.mark.parametrize("case", sorted(BATTERY))
def test_bad_input_battery(tmp_path, runner, case):
    content, words = BATTERY[case]
    study = tmp_path / "bad.toml"
    study.write_bytes(content if isinstance(content, bytes) else content.encode())
    results = tmp_path / "results"
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results)])
    assert out.exit_code == 2, out.output
    assert words in out.output
    assert out.output.startswith(f"Error: {study}") and "Traceback" not in out.output
    assert not results.exists()


@pytest.mark.parametrize("device, executor, words", [
    ("bogus", "local", "--device 'bogus': not a torch device; allowed: auto, cpu, cuda, cuda:N, mps"),
    ("cuda:x", "ray", "--device 'cuda:x': not a torch device"),
    pytest.param("cuda:7", "local", "--device 'cuda:7': this machine has", marks=pytest.mark.skipif(
        __import__("torch").cuda.device_count() > 7, reason="this machine has a cuda:7")),
])
def test_a_device_this_machine_lacks_is_a_usage_error_before_anything_is_written(tmp_path, runner, device,
                                                                                 executor, words):
    study = tmp_path / "s.toml"
    study.write_text(GOOD)
    results = tmp_path / "results"
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--device", device,
                              "--executor", executor])
    assert out.exit_code == 2 and out.output.startswith(f"Error: {words}"), out.output
    assert not results.exists()


def test_battery_is_at_least_25_cases():
    assert len(BATTERY) >= 25


def test_a_study_file_given_as_results_folder(tmp_path, runner):
    study = tmp_path / "demo.toml"
    study.write_text("[study]\n")
    for command in ("status", "report"):
        out = runner.invoke(cli, [command, str(study)])
        assert out.exit_code == 2 and "results folder is a file (it is a study file" in out.output, out.output


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_text("x"), "results folder is a file"),
    (lambda p: p.mkdir(), "not a classaudit results folder (no study.json)"),
    (lambda p: None, "no such results folder"),
    (lambda p: _study_json(p / "results", '{"name": "x", "runs": {}}'),
     "not a classaudit results folder (no study.json); did you mean "),
    (lambda p: _study_json(p, "[]"), "study.json: holds a JSON list, not an object with fields 'name' and 'runs'"),
    (lambda p: _study_json(p, '{"name": "x"}'), "study.json: field 'runs' is None; it must map each run id"),
    (lambda p: _study_json(p, '{"runs": {}}'), "study.json: field 'name' is None; it must be the study's name"),
    (lambda p: _study_json(p, '{"name": "x", "runs": {"ab12": {"seed": 0}}}'),
     "study.json: field 'runs.ab12' is {'seed': 0}; it must hold 'seed' (a whole number), 'label' (text)"),
])
def test_bad_results_folders(tmp_path, runner, make, words):
    target = tmp_path / "r"
    make(target)
    before = sorted(tmp_path.rglob("*"))
    for command in ("status", "report"):
        out = runner.invoke(cli, [command, str(target)])
        assert out.exit_code == 2 and words in out.output and "Traceback" not in out.output, out.output
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def _study_json(folder, text):
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(text)


def test_image_folder_problems_reach_the_user_before_anything_is_written(tmp_path, runner):
    root = tmp_path / "imgs"
    (root / "train" / "only").mkdir(parents=True)
    (root / "train" / "only" / "a.png").write_bytes(b"")
    (root / "test").mkdir()
    study = tmp_path / "s.toml"
    study.write_text(replace("name = \"shapes\"", "name = \"imagefolder\"")
                     .replace("n_train_per_class = 12\nn_test_per_class = 6\nsize = 16\n", f"root = \"{root}\"\n"))
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(tmp_path / "r"), "--data-dir", str(tmp_path)])
    assert out.exit_code == 2 and "imgs/test: no images found" in out.output
    assert not (tmp_path / "r").exists()


def test_debug_shows_the_traceback(tmp_path, runner):
    out = runner.invoke(cli, ["--debug", "sweep", str(tmp_path / "missing.toml")])
    assert out.exit_code != 0 and out.exception is not None


def test_nothing_is_unpickled():
    root = Path(__file__).resolve().parents[1] / "classaudit"
    source = "\n".join(p.read_text() for p in root.rglob("*.py"))
    assert "pickle.load" not in source and "allow_pickle=True" not in source
    for line in source.splitlines():
        if "torch.load(" in line:
            assert "weights_only=True" in line
