"""The Audit object: the same tables as the module-level functions with its options and class names, caching that
never leaks, one check at construction, figures as matplotlib Figures, and the report written from it."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

import classaudit as ca
from classaudit.analysis.audit import NO_PREDICTIONS
from tests.test_report import NAMES, frames, make_folder


@pytest.fixture(scope="module")
def pair():
    return frames()


@pytest.fixture(scope="module")
def audit(pair):
    results, predictions = pair
    return ca.Audit(results, predictions, alpha=0.1, min_effect=0.01)


def test_tables_equal_the_module_functions_with_the_audits_options(pair, audit):
    results, predictions = pair
    pd.testing.assert_frame_equal(audit.chosen(), ca.choose_strength(results))
    pd.testing.assert_frame_equal(audit.by_class("val"), ca.by_class(results, split="val"))
    expected = ca.difference(results, strength="all", alpha=0.1, min_effect=0.01, predictions=predictions)
    pd.testing.assert_frame_equal(audit.difference("all"), expected)
    pd.testing.assert_frame_equal(audit.harmed_fraction("all"), ca.harmed_fraction(expected))
    pd.testing.assert_frame_equal(audit.regret(), ca.regret(results))
    pd.testing.assert_frame_equal(audit.class_dependence(), ca.class_dependence(results))
    overall = audit.overall()
    assert overall["worst_class_name"].tolist() == [NAMES[k] for k in overall["worst_class_id"]]
    pd.testing.assert_frame_equal(overall.drop(columns="worst_class_name"), ca.overall(results))


def test_prediction_tables_take_the_chosen_strength_and_carry_class_names(pair, audit):
    results, predictions = pair
    chosen = dict(zip(audit.chosen()["regularizer"], audit.chosen()["chosen_strength"]))
    assert chosen == {"color_jitter": 1.0, "crop": 0.2}  # the synthetic sweep rewards the strongest strength
    shift = audit.confusion_shift()  # strength="chosen": every regularizer at its own s*
    for regularizer, strength in chosen.items():
        mine = shift[shift["regularizer"] == regularizer].reset_index(drop=True)
        direct = ca.confusion_shift(predictions, regularizer=regularizer, strength=strength)
        pd.testing.assert_frame_equal(mine.drop(columns=["class_name", "predicted_name"]), direct)
        assert mine["class_name"].tolist() == [NAMES[k] for k in mine["class_id"]]
        assert mine["predicted_name"].tolist() == [NAMES[k] for k in mine["predicted_id"]]
    absorbed = audit.absorbers(regularizer="crop", top=1)
    direct = ca.absorbers(predictions, regularizer="crop", strength=0.2, top=1)
    pd.testing.assert_frame_equal(absorbed.drop(columns=["class_name", "predicted_name"]), direct)
    # The synthetic errors all go to the next class: cat's lost predictions go to the second name.
    assert absorbed.loc[absorbed["class_id"] == 0, "predicted_name"].tolist() == [NAMES[1]]
    fp = audit.false_positive_shift(0.5)
    pd.testing.assert_frame_equal(fp.drop(columns="class_name"),
                                  ca.false_positive_shift(predictions, regularizer="crop", strength=0.5))
    churn = audit.churn(per_class=True)
    pd.testing.assert_frame_equal(churn.drop(columns="class_name"), ca.churn(predictions, per_class=True))


def test_cached_tables_are_copies(audit):
    first = audit.difference("all")
    first.loc[:, "delta"] = 99.0
    assert (audit.difference("all")["delta"] != 99.0).all()


def test_options_and_frames_are_checked_once_at_construction(pair):
    results, predictions = pair
    with pytest.raises(ca.AnalysisError) as info:
        ca.Audit(results, alpha=1.5)
    assert str(info.value) == "alpha=1.5 is not valid; allowed: a number between 0 and 1"
    with pytest.raises(ca.AnalysisError) as info:
        ca.Audit(results, test="ttest")
    assert str(info.value) == "test='ttest' is not valid; allowed: 'auto', 'moderated', 'welch', 'paired', 'permutation'"
    with pytest.raises(ca.AnalysisError) as info:
        ca.Audit(results, min_effect=-0.01)
    assert str(info.value) == "min_effect=-0.01 is not valid; allowed: a number from 0 to 1 (0.01 = 1 point)"
    with pytest.raises(ca.AnalysisError) as info:
        ca.Audit(results[results["split"] == "test"])
    assert str(info.value) == ca.analysis.NO_VALIDATION_SPLIT
    assert ca.Audit(results[results["split"] == "test"], select_on="test").select_on == "test"
    with pytest.raises(ca.AnalysisError) as info:
        ca.Audit(pd.concat([results, results]))
    assert str(info.value).startswith("the results frame has ")
    without = ca.Audit(results)
    with pytest.raises(ca.AnalysisError) as info:
        without.absorbers()
    assert str(info.value) == NO_PREDICTIONS.format(what="absorbers")
    with pytest.raises(ca.AnalysisError) as info:
        without.chosen_strength("cropp")
    assert str(info.value) == "regularizer='cropp' is not valid; allowed: 'color_jitter', 'crop'"


def test_from_predictions_matches_the_two_step_path(pair):
    from tests.test_report import sweep_frame

    data = sweep_frame(classes=len(NAMES))
    audit = ca.Audit.from_predictions(data, off={"crop": 1.0, "color_jitter": 0.0}, index="index",
                                      class_names=NAMES, alpha=0.1)
    pd.testing.assert_frame_equal(audit.results, pair[0])
    pd.testing.assert_frame_equal(audit.predictions, pair[1])
    assert audit.alpha == 0.1 and audit.source == "predictions frame"
    assert repr(audit).startswith("Audit('predictions frame': 2 regularizer(s) ['color_jitter', 'crop'], 5 classes")


def test_plots_are_figures_of_the_audits_tables(audit):
    curves = audit.plot.class_curves("crop")
    assert isinstance(curves, Figure)
    titles = [ax.get_title(loc="left") for ax in curves.axes if ax.get_visible()]
    assert len(titles) == len(NAMES) and titles[0].startswith("cat")
    harmed = set(audit.difference({"crop": 0.2}).query("harmed")["class_id"])
    assert sum(t.endswith("(harmed)") for t in titles) == len(harmed) > 0
    assert len(audit.plot.change_map().axes) == 2 + 1  # one map per regularizer and the colour bar
    bars = audit.plot.sorted_change("crop").axes[0]
    assert len(bars.patches) == len(NAMES)
    trade = audit.plot.trade_off().axes[0]
    assert {t.get_text() for t in trade.get_legend().get_texts()} == {"crop", "color_jitter"}
    went = audit.plot.where_predictions_went("crop").axes[0]
    assert len(went.patches) == len(audit.absorbers(regularizer="crop"))


def test_report_from_an_audit_of_a_folder_equals_the_folders_report(tmp_path):
    from classaudit.report import render_report

    path = make_folder(tmp_path / "results")
    audit = ca.Audit.from_folder(path)
    assert audit.folder == path and audit.source == str(path)
    assert render_report(audit) == render_report(path)
    written = audit.write_report(tmp_path / "report")
    assert sorted(p.name for p in written.iterdir()) == sorted(render_report(path))
