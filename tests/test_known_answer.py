"""Known answer, end to end: on the demo study (embedded `shapes` data) the analysis flags the colour classes
under strong colour jitter and not under crop, the shape and layout classes under aggressive crop and not
under colour jitter, and the texture classes under neither; and exempting the colour classes from the strongest
colour jitter (`classaudit remedy`) recovers them while no other class pays. Trains the demo study (25 runs, about
2 minutes on two cores) and the remedy's 5 runs.
"""

from __future__ import annotations

import pytest

import classaudit as ca
from classaudit.cli import cli
from classaudit.shapes import CUES, SENSITIVE_TO
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    from click.testing import CliRunner

    results = tmp_path_factory.mktemp("demo") / "results"
    out = CliRunner().invoke(cli, ["sweep", str(ROOT / "studies" / "demo.toml"), "--results", str(results),
                                   "--no-progress"])
    assert out.exit_code == 0, out.output
    return results


@pytest.fixture(scope="module")
def demo_results(demo_folder):
    return ca.load_results(demo_folder)


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


@pytest.mark.slow
def test_exempting_the_harmed_colour_classes_recovers_them_and_no_class_pays(demo_folder, tmp_path):
    import shutil

    from click.testing import CliRunner

    folder = tmp_path / "results"
    shutil.copytree(demo_folder, folder)  # the other tests read the demo's own study
    study = tmp_path / "remedy.toml"
    strongest = max(ca.Audit.from_folder(folder).strengths["color_jitter"])
    runner = CliRunner()
    out = runner.invoke(cli, ["remedy", str(folder), "--regularizer", "color_jitter", "--strength", f"{strongest:g}",
                              "--remedies", "exempt", "--out", str(study)])
    assert out.exit_code == 0, out.output
    colour = [name for name, cue in CUES.items() if cue == "colour"]
    assert out.output.splitlines()[0] == f"color_jitter at {strongest:g} harms {', '.join(colour)}"
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(folder), "--no-progress"])
    assert out.exit_code == 0, out.output
    audit = ca.Audit.from_folder(folder)
    remedy = audit.compare_axes("color_jitter", "color_jitter_exempt", strongest).set_index("class_name")
    table = remedy[["delta", "ci_low", "ci_high", "q_value", "helped", "harmed"]].round(3).to_string()
    # Every colour class gains, the group by far, and the test finds it: under the uniform strength a colour class
    # collapses on some seeds and not on others, so its per-seed gains vary too much for each to pass alone.
    assert (remedy.loc[colour, "delta"] > 0.1).all(), f"an exempt colour class is not recovered\n{table}"
    assert remedy.loc[colour, "delta"].mean() > 0.3, f"the colour classes recover too little\n{table}"
    assert remedy.loc[colour, "helped"].any(), f"no recovery is significant\n{table}"
    assert not remedy["harmed"].any(), f"a class pays for the remedy\n{table}"
    # Exempt, the colour classes are where they were with colour jitter off.
    vs_off = audit.difference(strength={"color_jitter_exempt": strongest}).set_index("class_name")
    assert not vs_off.loc[colour, "harmed"].any(), vs_off.loc[colour, ["delta", "q_value"]].round(3).to_string()
    # The report pairs the remedy with the uniform axis and says the same.
    summary = (ca.write_report(folder, tmp_path / "report") / "summary.md").read_text("utf-8")
    row = next(line for line in summary.splitlines() if line.startswith("| color_jitter_exempt | color_jitter |"))
    recovered, paying = row.split(" | ")[4:6]
    assert any(name in recovered for name in colour) and paying.strip(" |") == "none", row
