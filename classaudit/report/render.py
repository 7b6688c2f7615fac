"""Render: the structured report as the text of every file (index.html, the CSV tables, README.txt). Pure.

One Jinja2 environment, autoescape on for everything it renders, so any string that came from data (class
names come from folder names) is escaped on the page; the formatters are its filters. Figures are the only
markup let through unescaped (`|safe` in the template, nowhere else), and they come from matplotlib's SVG
writer, which escapes text itself.
CSV files carry the numbers at 6 significant digits with "\\n" line ends, so equal results give equal bytes.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import jinja2
import pandas as pd

from classaudit import formatters
from classaudit.report.structure import Report

FLOAT_FORMAT = "%.6g"
TEMPLATES = Path(__file__).with_name("templates")

# What each column of the CSV files means; README.txt is made from this. Tests check every column has an entry.
COLUMNS = {
    "regularizer": "the regularizer (the sweep axis)",
    "strength": "its strength, in the regularizer's own unit",
    "is_off": "True at the regularizer's off point",
    "off_strength": "the strength that means off",
    "chosen_strength": "s*, the strength with the best mean class accuracy on the selection split",
    "select_accuracy": "mean class accuracy at s* on the selection split",
    "accuracy": "mean class accuracy at s* on test",
    "accuracy_off": "mean class accuracy at the off point on test",
    "gain": "accuracy - accuracy_off",
    "class_id": "the class's index",
    "class_name": "the class's name",
    "predicted_id": "index of the predicted class",
    "predicted_name": "name of the predicted class",
    "n_images": "images of the class in the split",
    "n_seeds": "seeds (runs) averaged",
    "n_seeds_off": "seeds at the off point",
    "n_classes": "classes",
    "mean": "accuracy, mean over seeds (overall: of the mean class accuracy)",
    "mean_off": "the class's mean accuracy at the off point",
    "std": "standard deviation over seeds (ddof=1)",
    "sem": "standard error of the mean over seeds",
    "ci_low": "lower end of the confidence interval",
    "ci_high": "upper end of the confidence interval",
    "sampling_floor": "sqrt(mean (1 - mean) / n_images): one run's test-set sampling error",
    "group_min": "accuracy of the worst class (seed means)",
    "group_max": "accuracy of the best class (seed means)",
    "spread": "group_max - group_min",
    "class_std": "standard deviation across classes (ddof=0)",
    "worst_k_mean": "mean accuracy of the 3 worst classes",
    "worst_class_id": "index of the worst class",
    "worst_class_name": "name of the worst class",
    "worst_class_delta": "change of the class with the largest drop",
    "delta": "change against the off point (fractions: 0.01 = 1 point)",
    "p_value": "p-value of the test named in test_used",
    "friedman_statistic": "Friedman's chi-square: each seed's class changes ranked across the classes",
    "friedman_p": "its p-value; small when some classes change more than others (NaN: under 3 shared seeds or "
                  "3 classes; not corrected across strengths)",
    "q_value": "Benjamini-Hochberg q-value across every class and strength of the report (one family)",
    "harmed": "q_value < alpha and -delta > min_effect, the minimum effect tested (TREAT), not only estimated "
              "(never for test_used mcnemar: one seed a side)",
    "helped": "q_value < alpha and delta > min_effect (never for test_used mcnemar)",
    "test_used": "moderated, moderated_welch, paired, welch, permutation, mcnemar, fisher, sign_flip, identical "
                 "(s = off) or none (too few "
                 "seeds, or a class missing from a run)",
    "n_harmed": "classes harmed",
    "n_helped": "classes helped",
    "fraction_harmed": "n_harmed / n_classes",
    "best_strength": "the class's own best strength, picked on validation accuracy (on test without a val split)",
    "best_accuracy": "the class's test accuracy there",
    "chosen_accuracy": "the class's accuracy at s*",
    "regret": "best_accuracy - chosen_accuracy",
    "rate_off": "fraction of the class's images predicted as predicted_id at the off point (seed mean)",
    "rate": "the same fraction at the strength",
    "rank": "1 = the class that absorbed most",
    "share_of_loss": "delta over the class's accuracy loss",
    "false_positives_off": "images of other classes predicted as the class at the off point (per run, seed mean)",
    "false_positives": "the same at the strength",
    "churn": "fraction of images whose prediction differs between two seeds (mean over seed pairs)",
    "base": "the axis that sweeps the regularizer uniformly (remedies.csv: the reference arm)",
    "other": "the remedy's axis (remedies.csv: the compared arm)",
    "at_strength": "the strength both axes are compared at",
    "run_id": "the run's id (its folder under runs/)",
    "label": "the run's settings",
    "seed": "the run's seed",
    "axes": "the regularizers whose sweep the run belongs to",
    "test_accuracy": "mean class accuracy on test",
    "val_accuracy": "mean class accuracy on the validation split",
    "train_seconds": "training time in seconds",
    "epochs": "epochs trained",
    "final_train_loss": "training loss of the last epoch",
    "device": "device trained on",
    "torch": "torch version",
    "torchvision": "torchvision version",
    "classaudit": "classaudit version",
    "state": "pending (not run yet), failed or damaged",
    "problem": "the error, for a failed or damaged run",
}

# Columns whose meaning in one file differs from COLUMNS.
FILE_COLUMNS = {
    "false_positive_shift.csv": {"delta": "false_positives - false_positives_off (images per run, not a fraction)"},
    "remedies.csv": {"mean_off": "the class's mean accuracy on the uniform axis (base)",
                     "mean": "the class's mean accuracy on the remedy's axis (other)",
                     "n_seeds_off": "seeds on the uniform axis", "n_seeds": "seeds on the remedy's axis"},
}

FILES = {
    "index.html": "the report (self-contained: open it in a browser)",
    "summary.md": "two Markdown tables (for a README, a paper draft, a pull request): the headline per "
                  "regularizer, and every strength against off with the classes it harms",
    "chosen.csv": "choose_strength: the strength chosen per regularizer and its gain",
    "overall.csv": "overall (test): mean, worst-class and spread of class accuracy per strength",
    "overall_val.csv": "overall on the validation split (what chose the strength)",
    "by_class.csv": "by_class (test): each class's accuracy per strength, mean and spread over seeds",
    "difference.csv": "difference: each class's change against off at every strength, with test and q-value",
    "harmed_fraction.csv": "harmed_fraction: classes harmed and helped per strength",
    "class_dependence.csv": "class_dependence: Friedman's test of whether a strength changes every class alike",
    "regret.csv": "regret: each class's own best strength against the chosen one",
    "confusion_shift.csv": "confusion_shift at the chosen strength (the strongest where off is chosen): change of "
                           "each confusion-matrix entry",
    "absorbers.csv": "absorbers at the chosen strength (the strongest where off is chosen): the classes that took "
                     "most of each class's predictions",
    "false_positive_shift.csv": "false_positive_shift at the chosen strength (the strongest where off is chosen): "
                                "images of other classes predicted as the class, per run",
    "churn.csv": "churn: disagreement between seeds per strength",
    "churn_by_class.csv": "churn per class",
    "remedies.csv": "compare_axes: each class-conditional remedy against the uniform strength it remedies, class "
                    "by class (the uniform axis plays off: helped = recovered, harmed = pays for the remedy)",
    "runs.csv": "the finished runs",
    "missing_runs.csv": "runs of the study without a result (pending, failed or damaged)",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The one environment. Built once, on first use: importing the package changes nothing."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=lambda name: name is None or ".html" in name,  # not the Markdown
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(formatters.FILTERS)
    return env


def render(report: Report) -> dict[str, str]:
    """{file name: text} of every file of the report, README.txt last."""
    files = {name: environment().get_template(f"{name}.j2").render(report=report)
             for name in ("index.html", "summary.md")}
    for name, frame in report.tables.items():
        files[name] = csv_text(frame)
    files["README.txt"] = readme(report, list(files))
    return files


def csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return buffer.getvalue()


def readme(report: Report, names: list[str]) -> str:
    """README.txt: what each file holds and what each column means. Plain text, no data strings in it."""
    lines = ["classaudit report", "", "Files:", ""]
    for name in [*names, "README.txt"]:
        lines.append(f"{name}: {FILES.get(name, 'this file')}")
        if name in report.tables:
            for column in report.tables[name].columns:
                meaning = FILE_COLUMNS.get(name, {}).get(column, COLUMNS.get(column, ""))
                lines.append(f"    {column}: {meaning}")
        lines.append("")
    lines += [
        "Accuracies, rates and their changes are fractions (0.01 = 1 percentage point); counts are numbers of",
        "images. Numbers are written to 6 significant digits; an empty cell is a",
        "value that does not exist (e.g. an interval with one seed). Class names are written as they are, quoted",
        "by the CSV rules when they contain commas or quotes.",
        "",
    ]
    return "\n".join(lines)
