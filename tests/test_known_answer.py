"""Known answer, end to end: on the demo study (embedded `shapes` data) the analysis flags the colour classes
under strong colour jitter and not under crop, the shape and layout classes under aggressive crop and not
under colour jitter, and the texture classes under neither. Trains the demo study (25 runs, about 2 minutes on two cores).
"""

from __future__ import annotations

import pytest

import classaudit as ca
from classaudit.cli import cli
from classaudit.shapes import CUES, SENSITIVE_TO
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory):
    from click.testing import CliRunner

    results = tmp_path_factory.mktemp("demo") / "results"
    out = CliRunner().invoke(cli, ["sweep", str(ROOT / "studies" / "demo.toml"), "--results", str(results),
                                   "--no-progress"])
    assert out.exit_code == 0, out.output
    return ca.load_results(results)


@pytest.mark.slow
@pytest.mark.parametrize("regularizer", ["crop", "color_jitter"])
def test_harm_falls_on_the_cue_groups_the_regularizer_blurs(demo_results, regularizer):
    diff = ca.difference(demo_results, strength="all", alpha=0.05)
    axis = diff[diff["regularizer"] == regularizer]
    strongest = axis["strength"].min() if regularizer == "crop" else axis["strength"].max()
    at = axis[axis["strength"] == strongest].set_index("class_name")
    harmed = set(at.index[at["harmed"]])
    exposed = {name for name, cue in CUES.items() if regularizer in SENSITIVE_TO[cue]}
    table = at[["delta", "ci_low", "ci_high", "q_value", "harmed"]].round(3).to_string()
    # No class outside the exposed groups is harmed ...
    assert harmed <= exposed, f"{regularizer} at {strongest:g}: harmed outside {sorted(exposed)}\n{table}"
    # ... and every exposed group loses: at least one class of each group is harmed, and the group as a whole
    # loses accuracy (the network may give an ambiguous region to one class of a group; its neighbour pays).
    for cue in sorted({CUES[c] for c in exposed}):
        group = [c for c in exposed if CUES[c] == cue]
        assert harmed & set(group), f"{regularizer} at {strongest:g}: no {cue} class harmed\n{table}"
        assert at.loc[group, "delta"].mean() < -0.05, f"{regularizer}: {cue} classes lose too little\n{table}"
