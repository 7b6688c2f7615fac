"""Runs trained by the user's own code (`train.command`, `train.function`): the values a run hands the code, the
predictions it hands back stored as classaudit's own runs are, and one exact message for each way it can go wrong,
with nothing half-written in the store. The code is tests/fake_train.py, a script of the standard library only.
(A real PyTorch script, end to end: test_own_training.py; through Ray: test_executors.py.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classaudit import external, predictions_file, sweep
from classaudit.cli import cli
from classaudit.config import expand, load_study
from classaudit.errors import RunFailed, UsageError
from classaudit.executors import Task, execute_task, run_task
from classaudit.store import ResultsFolder, load_predictions, load_results
from tests.conftest import OWN_TRAIN, ROOT, own_study, sweep_cli

FAKE = Path(__file__).with_name("fake_train.py")


def first_task(study_path: Path) -> Task:
    """The study's first run as a sweep into <its folder>/r would hand it to a worker."""
    study = load_study(study_path)
    run = expand(study)[0]
    return Task(run.run_id, run.label, run.config, None, None, 1, str(study_path.parent / "r" / "checkpoints"),
                str(study_path.parent), study.train.get("time_limit"))


def by_hand(study_dir: Path, crop: float, seed: int, out: Path) -> tuple[pd.DataFrame, list[str]]:
    """The script run by hand, as its user would: its own predictions and class names, read with pandas."""
    out.mkdir()
    subprocess.run([sys.executable, "fake_train.py", "--crop", repr(crop), "--seed", str(seed), "--out", str(out)],
                   cwd=study_dir, check=True, env={k: v for k, v in os.environ.items() if k != "FAKE_MODE"})
    return pd.read_csv(out / "predictions.csv"), (out / "classes.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The own-code study swept in this process, each run logging its arguments and environment."""
    from click.testing import CliRunner

    tmp = tmp_path_factory.mktemp("own")
    study = own_study(tmp)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_LOG", str(tmp / "log.jsonl"))
        out = sweep_cli(CliRunner(), study, tmp / "results", "--executor", "inprocess")
    assert out.exit_code == 0, out.output
    log = [json.loads(line) for line in (tmp / "log.jsonl").read_text().splitlines()]
    return study, tmp / "results", out.output, log


def test_a_command_sweep_stores_what_the_script_predicted(swept, tmp_path):
    study, results, output, _ = swept
    assert "trained 4 run(s)" in output and "0 failed" in output
    frame, predictions = load_results(results), load_predictions(results)
    assert set(frame["class_name"]) == {"cat", "dog", "bird", "frog"}
    for i, (crop, seed) in enumerate([(1.0, 0), (0.5, 0), (1.0, 1), (0.5, 1)]):
        own, names = by_hand(study.parent, crop, seed, tmp_path / f"out{i}")
        # Per-class accuracy from the script's own file, computed here with pandas alone.
        own["class_name"] = [names[k] for k in own["label"]]
        expected = own.assign(hit=own["label"] == own["pred"]).groupby(["split", "class_name"])["hit"].mean()
        mine = frame[(frame["regularizer"] == "crop") & (frame["strength"] == crop) & (frame["seed"] == seed)]
        assert mine.set_index(["split", "class_name"])["accuracy"].sort_index().to_dict() == \
            expected.sort_index().to_dict()
        stored = predictions[(predictions["regularizer"] == "crop") & (predictions["strength"] == crop)
                             & (predictions["seed"] == seed)]
        own = own.sort_values(["split", "index"], ignore_index=True)
        stored = stored.sort_values(["split", "index"], ignore_index=True)
        assert (stored[["index", "label", "pred"]].to_numpy() == own[["index", "label", "pred"]].to_numpy()).all()
        assert np.allclose(stored["p_true"], own["p_true"])


def test_the_command_gets_every_value_as_placeholder_and_environment_variable(swept):
    study, results, output, log = swept
    run = expand(load_study(study))[1]  # crop 0.5, seed 0
    entry = next(e for e in log if e["argv"][2] == "0.5" and e["argv"][4] == "0")
    out = entry["argv"][6]
    assert entry["argv"] == ["fake_train.py", "--crop", "0.5", "--seed", "0", "--out", out]
    assert entry["cwd"] == str(study.parent)  # the study's folder
    assert not Path(out).exists()  # the temporary folder is gone once read
    env = entry["env"]
    assert {k: env[k] for k in ("CLASSAUDIT_SEED", "CLASSAUDIT_CROP", "CLASSAUDIT_RUN_ID", "CLASSAUDIT_OUT",
                                "CLASSAUDIT_DEVICE", "CLASSAUDIT_THREADS", "CLASSAUDIT_CUTMIX")} == {
        "CLASSAUDIT_SEED": "0", "CLASSAUDIT_CROP": "0.5", "CLASSAUDIT_RUN_ID": run.run_id, "CLASSAUDIT_OUT": out,
        "CLASSAUDIT_DEVICE": "cpu", "CLASSAUDIT_THREADS": env["OMP_NUM_THREADS"], "CLASSAUDIT_CUTMIX": "0.0"}
    assert env["CLASSAUDIT_CHECKPOINT"] == str((results / "checkpoints" / f"{run.run_id}.pt").resolve())
    assert json.loads(env["CLASSAUDIT_CONFIG"]) == run.config
    stored = json.loads((results / "runs" / run.run_id / "config.json").read_text())
    assert stored == run.config == {"train": {"command": json.loads(OWN_TRAIN.partition(" = ")[2])}, "seed": 0,
                                    "regularizers": {"crop": {"strength": 0.5, "start_epoch": 0}}}
    record = json.loads((results / "runs" / run.run_id / "record.json").read_text())
    assert record["environment"]["command"] == [sys.executable, "fake_train.py", "--crop", "0.5", "--seed", "0",
                                                "--out", "{out}"]


def test_the_dry_run_and_the_sweep_show_the_exact_command_of_the_first_run(swept, runner, tmp_path):
    study, _, output, _ = swept
    first = expand(load_study(study))[0]
    line = (f"  each run executes train.command in {study.parent}; the first: {sys.executable} fake_train.py --crop "
            f"1.0 --seed 0 --out '{{out}}'")
    assert line in output.splitlines()
    dry = runner.invoke(cli, ["sweep", str(study), "--results", str(tmp_path / "r"), "--dry-run"])
    assert dry.exit_code == 0 and dry.output.splitlines()[:3] == [
        f"own: 4 runs, 4 to train, 0 finished in {tmp_path / 'r'}", line, f"  {first.run_id}  baseline seed=0"]
    assert not (tmp_path / "r").exists()


def test_a_function_study_gives_the_commands_results(swept, tmp_path, runner, monkeypatch):
    _, results, _, _ = swept
    for mode in ("", "write"):  # returned as a frame, or written into out
        monkeypatch.setenv("FAKE_MODE", mode)
        study = own_study(tmp_path / f"f{mode}", train='function = "fake_train:train_function"')
        out = sweep_cli(runner, study, tmp_path / f"r{mode}", "--executor", "inprocess")
        assert out.exit_code == 0, out.output
        assert "  each run calls train.function fake_train:train_function" in out.output
        mine, theirs = load_results(tmp_path / f"r{mode}"), load_results(results)
        columns = ["regularizer", "strength", "seed", "split", "class_name", "n", "correct"]
        pd.testing.assert_frame_equal(mine[columns], theirs[columns])
    sys.modules.pop("fake_train", None)


# ----------------------------------------------------------------------------------------------------------
# Each way it can go wrong: one message, exact; nothing stored.


@pytest.mark.parametrize("mode, message", [
    ("exit", 'train.command exited with status 3; the last line of its stderr: "ValueError: learning rate must be '
             'positive"'),
    ("nofile", predictions_file.NO_PREDICTIONS),
    ("both", "{out}: both predictions.csv and predictions.parquet; write one of them"),
    ("noclasses", "{out}/classes.txt: missing; write the class names there, one a line, class 0 first"),
    ("nocolumn", "{out}/predictions.csv: column 'pred' is missing; expected the columns split, index, label, pred "
                 "and optionally p_true (found: split, index, label, p_true)"),
    ("labels", "{out}/predictions.csv: column 'label': value 7 (split {split}, index {index}) is out of range; the "
               "run names 4 classes, so class ids are 0 to 3"),
    ("split", '{out}/predictions.csv: column \'split\': value "train" is not allowed; expected "val" or "test"'),
    ("index", "{out}/predictions.csv: split {split}: index {index} appears more than once; expected each image "
              "once, index 0 to {last} for its {n} images, the same image at the same index in every run"),
    ("whole", "{out}/predictions.csv: column 'label': value 2.5 (row 2, counted from 0) is not a whole number; "
              "expected a class id from 0"),
    ("p_true", "{out}/predictions.csv: column 'p_true': value 1.5 (split {split}, index {index}) is not allowed; "
               "expected a probability from 0 to 1"),
])
def test_a_broken_run_is_one_message(tmp_path, monkeypatch, mode, message):
    from tests.fake_train import SIZES, predict

    monkeypatch.setenv("FAKE_MODE", mode)
    task = first_task(own_study(tmp_path))
    outcome = run_task(task)
    row = predict(1.0, 0)[{"labels": 3, "p_true": 0, "index": 0}.get(mode, 0)]
    split = row[0]
    assert outcome.error == message.format(out="{out}", split=split, index=row[1], last=SIZES[split] - 1,
                                           n=SIZES[split])
    if mode == "exit":  # the tail of its stderr, for failed/
        assert outcome.traceback.endswith("loading data\nValueError: learning rate must be positive\n")


def test_what_else_a_run_can_hand_back_wrongly(tmp_path):
    def read(files: dict[str, bytes | str]) -> str:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        for name, body in files.items():
            (out / name).write_bytes(body if isinstance(body, bytes) else body.encode())
        with pytest.raises(RunFailed) as info:
            predictions_file.read_predictions(out)
        return str(info.value)

    good = "split,index,label,pred\ntest,0,1,1\ntest,1,0,1\n"
    assert read({"predictions.csv": good.replace("test", "val"), "classes.txt": "a\nb\n"}) == (
        '{out}/predictions.csv: no row has split "test"; every run must predict the test split (val is optional)')
    assert read({"predictions.csv": good, "classes.txt": "a\nb\na\n"}) == (
        '{out}/classes.txt: class name "a" appears more than once; write the class names there, one a line, class '
        "0 first")
    assert read({"predictions.csv": good, "classes.txt": "a\n\nb\n"}) == (
        "{out}/classes.txt: class 1 has an empty name; write the class names there, one a line, class 0 first")
    assert read({"predictions.parquet": b"not parquet", "classes.txt": "a\nb\n"}).startswith(
        "{out}/predictions.parquet: cannot be read as Parquet (")
    assert read({"predictions.csv": good.replace("test,1,0,1", "test,2,0,1"), "classes.txt": "a\nb\n"}) == (
        "{out}/predictions.csv: split test: index 1 is missing; expected each image once, index 0 to 1 for its 2 "
        "images, the same image at the same index in every run")
    module = tmp_path / "returns_a_number.py"
    module.write_text("def train(config, **values):\n    return 42\n")
    task = first_task(own_study(tmp_path / "s", train='function = "returns_a_number:train"'))
    assert run_task(dataclasses.replace(task, workdir=str(tmp_path))).error == (
        "train.function returned a value of type int; expected None (predictions written to out) or a pair "
        "(predictions DataFrame, class names)")
    sys.modules.pop("returns_a_number", None)


def test_a_failed_run_is_recorded_with_its_stderr_and_nothing_is_stored(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "exit")
    out = sweep_cli(runner, own_study(tmp_path), tmp_path / "r", "--executor", "inprocess")
    assert out.exit_code == 1 and "trained 0 run(s)" in out.output and "4 failed" in out.output
    assert ResultsFolder(tmp_path / "r").run_ids() == []
    failure = json.loads(next((tmp_path / "r" / "failed").iterdir()).read_text())
    assert failure["error"].startswith("train.command exited with status 3")
    assert failure["traceback"].startswith(f"$ {sys.executable} fake_train.py --crop 1.0 --seed 0 --out ")
    assert "stderr, last 40 lines:\nloading data\nValueError" in failure["traceback"]
    monkeypatch.delenv("FAKE_MODE")
    again = sweep_cli(runner, own_study(tmp_path), tmp_path / "r", "--executor", "inprocess")
    assert again.exit_code == 0 and "trained 4 run(s)" in again.output
    assert not any((tmp_path / "r" / "failed").iterdir())


def test_a_run_whose_images_differ_from_the_others_is_not_stored(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "images")  # seed 1 predicts another image at test index 5
    out = sweep_cli(runner, own_study(tmp_path), tmp_path / "r", "--executor", "inprocess")
    assert out.exit_code == 1 and "trained 2 run(s)" in out.output and "2 failed" in out.output
    first = expand(load_study(tmp_path / "own.toml"))[0].run_id
    message = sweep.OTHER_LABELS.format(split="test", index=5, label=2, expected=1, ref=first, count=1, n=20)
    assert message == (f"split test: image 5 has label 2, but 1 in run {first} (1 of 20 images differ): every run "
                       "of a study predicts the same images, in the same order")
    assert out.output.count(f"failed: {message}") == 2
    stored = {json.loads((p / "record.json").read_text())["seed"] for p in (tmp_path / "r" / "runs").iterdir()}
    assert stored == {0}
    # A later sweep compares with the runs stored before it.
    again = sweep_cli(runner, own_study(tmp_path), tmp_path / "r", "--executor", "inprocess")
    assert again.exit_code == 1 and again.output.count(f"failed: {message}") == 2


def test_a_command_past_its_time_limit_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "60")
    task = first_task(own_study(tmp_path, train_extra="time_limit = 0.01"))
    started = time.monotonic()
    outcome = run_task(task)
    assert outcome.error == "train.command was stopped after train.time_limit = 0.01 minutes"
    assert time.monotonic() - started < 30  # stopped, not waited for


def test_a_program_that_is_not_there(tmp_path, runner):
    study = own_study(tmp_path, command='["fake-trainer", "--seed", "{seed}", "--out", "{out}"]')
    out = sweep_cli(runner, study, tmp_path / "r", "--executor", "inprocess")
    assert out.exit_code == 2 and out.output == (
        f"Error: {study}: field 'train.command[0]': value \"fake-trainer\" is not a program: not on PATH, nor an "
        f"executable file in {tmp_path}\n")
    assert not (tmp_path / "r").exists()
    # Where it is checked only on the machine that runs it (a cluster node): the run fails, saying why.
    assert run_task(first_task(study)).error == (
        f'train.command: program "fake-trainer" is not found (not on PATH, nor a file in {tmp_path})')


def test_a_function_that_is_not_there(tmp_path, runner):
    study = own_study(tmp_path, train='function = "fake_train:no_such_function"')
    out = sweep_cli(runner, study, tmp_path / "r", "--executor", "inprocess")
    assert out.exit_code == 2 and out.output == (
        f"Error: {study}: field 'train.function': value \"fake_train:no_such_function\": module fake_train has no "
        "function no_such_function\n")
    assert not (tmp_path / "r").exists()
    sys.modules.pop("fake_train", None)


@pytest.mark.parametrize("train, message", [
    ('command = ["{python}", "fake_train.py", "--crop", "{crp}", "--out", "{out}"]',
     "field 'train.command[3]': value \"{crp}\": placeholder {crp} names no axis of the study and no value of the "
     "run (did you mean \"crop\"?); allowed: {checkpoint}, {crop}, {device}, {out}, {python}, {run_id}, {seed}, "
     "{threads}"),
    ('command = ["{python}", "fake_train.py", "--mixup", "{mixup}"]',
     "field 'train.command[3]': value \"{mixup}\": placeholder {mixup} names a regularizer the study does not sweep "
     "(no [sweep.*] axis or [baseline] entry sets it); allowed: {checkpoint}, {crop}, {device}, {out}, {python}, "
     "{run_id}, {seed}, {threads}"),
    ('command = ["{python}", "fake_train.py", "--crop={crop"]',
     "field 'train.command[2]': value \"--crop={crop\" is not a valid template (expected '}' before end of "
     "string); write {name} for a value of the run, {{ and }} for a literal brace"),
    ('command = []',
     "field 'train.command': value [] is not allowed; expected a non-empty list of non-empty strings: the program "
     "and its arguments, e.g. [\"python\", \"train.py\", \"--seed\", \"{seed}\"]"),
    ('command = ["x"]\nfunction = "fake_train:train_function"',
     "field 'train.function': value \"fake_train:train_function\" is given with train.command; give one of them"),
    ('function = "fake_train.train_function"',
     "field 'train.function': value \"fake_train.train_function\" is not allowed; expected text "
     "\"package.module:function\""),
    ('function = "fake_train:train_function"\ntime_limit = 5',
     "field 'train.time_limit': value 5 is not allowed with train.function (it runs inside the worker, which "
     "cannot stop it); use train.command for a time limit"),
    ('command = ["x"]\nlr = 0.1',
     "field 'train.lr': value 0.1 is a setting of classaudit's own training, which a study with train.command "
     "does not use; remove it (and give it to your code)"),
    ('command = ["x"]\n[sweep.late]\nregularizer = "crop"\nstrengths = [0.5]\nstart_epoch = 2',
     "field 'sweep.late.start_epoch': value 2 is not allowed with your own training code, which is told each "
     "strength, not when to switch it on; remove start_epoch"),
    ('command = ["x"]\n[sweep.epochs]\nstrengths = [5]',
     "field 'sweep.epochs': the off point of epochs is train.epochs, which this study does not give; set "
     "train.epochs (the epochs your code trains by default)"),
])
def test_a_bad_study_of_own_code_is_refused_when_read(tmp_path, runner, train, message):
    study = own_study(tmp_path, train=train)
    with pytest.raises(UsageError) as info:
        load_study(study)
    assert str(info.value) == f"{study}: {message}"
    out = sweep_cli(runner, study, tmp_path / "r")  # exit status 2, nothing written
    assert out.exit_code == 2 and out.output == f"Error: {study}: {message}\n" and not (tmp_path / "r").exists()


def test_a_time_limit_without_a_command_is_refused(tmp_path):
    from tests.conftest import TINY_STUDY

    (tmp_path / "t.toml").write_text(TINY_STUDY.replace("lr = 0.05", "lr = 0.05\ntime_limit = 5"))
    with pytest.raises(UsageError) as info:
        load_study(tmp_path / "t.toml")
    assert str(info.value) == (f"{tmp_path / 't.toml'}: field 'train.time_limit': value 5 is only for train.command; "
                               "classaudit's own runs have none (on Slurm: --time-limit)")


def test_a_study_without_a_command_or_function_runs_only_classaudits_training(monkeypatch, tiny_study):
    """The dispatch reads the run's config alone: without a command or function there, the user's code is never
    reached; and [dataset] and [model] stay required."""
    def no_code(*args, **kwargs):
        raise AssertionError("the user's code was run")

    monkeypatch.setattr(external, "run_external", no_code)
    monkeypatch.setattr("classaudit.train.train_one", lambda config, **kw: ("trained by classaudit", config))
    run = expand(load_study(tiny_study))[0]
    assert execute_task(Task(run.run_id, run.label, run.config)) == ("trained by classaudit", run.config)
    text = tiny_study.read_text()
    tiny_study.write_text(text[:text.index("[model]")] + text[text.index("[train]"):])
    with pytest.raises(UsageError, match="field 'model': missing; add a \\[model\\] table"):
        load_study(tiny_study)


# ----------------------------------------------------------------------------------------------------------
# Killed: the command goes with its worker, and the next sweep finishes the study.


def test_a_killed_sweep_of_a_command_resumes_and_equals_the_uninterrupted_one(swept, tmp_path, runner):
    _, reference, _, _ = swept
    study = own_study(tmp_path)
    log, results = tmp_path / "log.jsonl", tmp_path / "r"
    env = {**os.environ, "FAKE_HANG": "0.5 0", "FAKE_LOG": str(log)}  # the second run hangs
    command = [sys.executable, "-m", "classaudit.cli", "sweep", str(study), "--results", str(results), "--no-progress",
               "--workers", "1"]
    env["PYTHONPATH"] = str(ROOT)  # this copy of classaudit, in the sweep and its workers
    sweep_process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(ResultsFolder(results).run_ids()) < 1 or len(log.read_text().splitlines()) < 2:
            assert sweep_process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(sweep_process.pid, signal.SIGKILL)  # one run stored, the next one's command hanging
        sweep_process.wait()
    finally:
        if sweep_process.poll() is None:
            os.killpg(sweep_process.pid, signal.SIGKILL)
    in_flight = json.loads(log.read_text().splitlines()[-1])["pid"]
    deadline = time.monotonic() + 10
    while _alive(in_flight) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(in_flight):
        os.kill(in_flight, signal.SIGKILL)
        raise AssertionError("the command outlived its sweep")
    done = len(ResultsFolder(results).run_ids())
    again = sweep_cli(runner, study, results, "--executor", "inprocess")
    assert again.exit_code == 0, again.output
    assert f"trained {4 - done} run(s)" in again.output and f"{done} already finished" in again.output
    pd.testing.assert_frame_equal(load_results(results), load_results(reference))
    pd.testing.assert_frame_equal(load_predictions(results), load_predictions(reference))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
