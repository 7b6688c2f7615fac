"""Transfer known answer, end to end: pre-training on `shapes` with strong colour jitter makes the frozen features
blind enough to hue that the downstream classes told apart by hue alone lose accuracy under a linear probe, while
those told apart by shape or texture do not. Trains 16 small runs (8 seeds at colour jitter 0 and 2; about two
minutes on two idle cores)."""

from __future__ import annotations

import pytest

import classaudit as ca
from classaudit.cli import cli
from classaudit.shapes import DOWNSTREAM_CUES
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def transfer_audit(tmp_path_factory):
    from click.testing import CliRunner

    results = tmp_path_factory.mktemp("transfer") / "results"
    out = CliRunner().invoke(cli, ["sweep", str(ROOT / "studies" / "transfer_demo.toml"), "--results", str(results),
                                   "--set", "sweep.color_jitter.strengths=[0.0, 2.0]", "--set", "study.seeds=8",
                                   "--no-progress"])
    assert out.exit_code == 0, out.output
    return ca.Audit.from_folder(results)


@pytest.mark.slow
def test_strong_colour_jitter_harms_the_hue_defined_downstream_classes_only(transfer_audit):
    diff = transfer_audit.transfer().difference(strength=2.0)
    at = diff.set_index("class_name")
    table = at[["delta", "ci_low", "ci_high", "q_value", "harmed"]].round(3).to_string()
    harmed = set(at.index[at["harmed"]])
    hue = sorted(name for name, cue in DOWNSTREAM_CUES.items() if cue == "hue")
    others = sorted(set(at.index) - set(hue))
    # Only hue classes are flagged, and most of them ...
    assert harmed <= set(hue), f"harmed outside the hue classes\n{table}"
    assert len(harmed) >= 3, f"fewer than 3 of the 4 hue classes harmed\n{table}"
    # ... every hue class loses on average, the group by more than 5 points, and the shape and texture classes
    # keep their accuracy. (Seeds 0-7 flag all four here; vermilion, the farthest from the others' hues, loses
    # least, 4-5 points, and misses q < 0.05 in some sets of 8 seeds.)
    assert (at.loc[hue, "delta"] < 0).all(), f"a hue class does not lose\n{table}"
    assert at.loc[hue, "delta"].mean() < -0.05, f"the hue classes lose too little\n{table}"
    assert (at.loc[others, "delta"].abs() < 0.02).all(), f"a shape or texture class moves\n{table}"


@pytest.mark.slow
def test_the_study_itself_is_not_harmed_where_the_downstream_task_is(transfer_audit):
    """Upstream, the colour classes pay too (the demo's known answer); the probe's view is a view of its own."""
    upstream = transfer_audit.difference(strength=2.0).set_index("class_name")
    assert set(upstream.index) == {"red", "yellow", "green", "square", "wide", "tall", "shallow", "steep",
                                   "stripes", "checker"}
    assert not upstream.loc[["stripes", "checker"], "harmed"].any()
