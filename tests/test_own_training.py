"""The example of a study whose runs are the user's own PyTorch script (examples/own_training), end to end: the
README's two commands, as written there, sweep it and write its report, and every stored per-class result is what
the script itself predicts when run by hand.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pandas as pd
import pytest

from classaudit.cli import cli
from classaudit.store import load_predictions, load_results
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "own_training"


def readme_commands() -> list[list[str]]:
    """The commands the README's "Audit your own training code" section gives for the example."""
    section = (ROOT / "README.md").read_text().split("## Audit your own training code")[1].split("\n## ")[0]
    lines = [line for block in re.findall(r"```sh\n(.*?)```", section, re.S) for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("classaudit ")]


@pytest.mark.slow
def test_the_example_sweeps_reports_and_stores_what_the_script_predicts(runner, tmp_path, monkeypatch):
    sweep, report = readme_commands()
    assert sweep[:2] == ["sweep", "examples/own_training/study.toml"] and report[0] == "report"
    monkeypatch.chdir(ROOT)  # where a reader of the README runs them
    results = tmp_path / "results"
    swept = runner.invoke(cli, [*(str(results) if a == "results/own_training" else a for a in sweep), "--no-progress"])
    assert swept.exit_code == 0, swept.output
    assert "trained 4 run(s)" in swept.output and "0 failed" in swept.output
    first = f"each run executes train.command in {EXAMPLE}; the first: {sys.executable} train.py --crop 1.0 --seed 0"
    assert first in swept.output
    reported = runner.invoke(cli, [*(str(results) if a == "results/own_training" else a for a in report), "--out",
                                   str(tmp_path / "report")])
    assert reported.exit_code == 0, reported.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "own_training" in page and "square" in page and "crop" in page

    # One run again, by hand, as its author would run it: its own predictions file, read with pandas.
    frame, predictions = load_results(results), load_predictions(results)
    run = frame[(frame["strength"] == 0.25) & (frame["seed"] == 1)]["run_id"].iloc[0]
    record = json.loads((results / "runs" / run / "record.json").read_text())
    out = tmp_path / "by_hand"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": str(record["environment"]["threads"])}  # the same bits need them
    subprocess.run([sys.executable, "train.py", "--crop", "0.25", "--seed", "1", "--device", "cpu", "--out",
                    str(out)], cwd=EXAMPLE, env=env, check=True, capture_output=True)
    own = pd.read_csv(out / "predictions.csv")
    names = (out / "classes.txt").read_text().splitlines()
    own["class_name"] = [names[k] for k in own["label"]]
    expected = own.assign(hit=own["label"] == own["pred"]).groupby(["split", "class_name"])["hit"].mean()
    stored = frame[frame["run_id"] == run].set_index(["split", "class_name"])["accuracy"]
    assert stored.sort_index().to_dict() == expected.sort_index().to_dict()
    mine = predictions[predictions["run_id"] == run].sort_values(["split", "index"], ignore_index=True)
    own = own.sort_values(["split", "index"], ignore_index=True)
    assert mine[["split", "index", "label", "pred"]].equals(own[["split", "index", "label", "pred"]].astype(
        mine[["split", "index", "label", "pred"]].dtypes))
    assert (mine["p_true"] - own["p_true"]).abs().max() < 1e-6  # the file keeps 6 decimals
    # The script trains something: on the test split it does far better than chance (10 classes).
    assert frame[(frame["split"] == "test") & (frame["strength"] == 1.0)]["accuracy"].mean() > 0.5
