"""Per-class audit of a regularizer sweep: every table of the report, computed from the tidy results frame.

The questions follow Balestriero, Bottou & LeCun, "The Effects of Regularization and Data Augmentation are Class
Dependent" (NeurIPS 2022, arXiv 2204.03632): which classes lose accuracy at the strength cross-validation picks,
by how much and how sure we are; and Kirichenko et al., "Understanding the Detrimental Class-level Effects of Data
Augmentation" (NeurIPS 2023, arXiv 2401.01764): where the lost predictions go. Names follow fairlearn's
vocabulary (``by_class``, ``overall``, ``difference``, ``group_min``).

Only numpy, pandas and scipy are imported (never torch), so results can be analysed on any machine. Every function
takes the frame ``classaudit.load_results`` returns (or :func:`from_predictions` builds), never modifies it, and
returns a new DataFrame whose rows are sorted by regularizer, strength, then class. Statistics come from scipy.

The package, one concern a module, each importing only those above it:

    schema        the frames' columns and splits, strength equality (store and report import these)
    checks        AnalysisError, its messages, and the checks that raise them
    accuracy      by_class, overall
    points        each axis' off point and shared seeds, choose_strength, the points a `strength=` names
    significance  the per-class tests on arrays (no frames)
    change        difference, harmed_fraction, class_dependence, regret
    compare       compare_axes: two axes at one strength (a remedy against the uniform strength)
    confusion     confusion_shift, absorbers, false_positive_shift, churn
    ingest        from_predictions
    plan          seeds_needed: how many seeds a loss of a given size needs
    simulate      simulated sweeps with a known answer (calibration, power, seed plans)
    plot          the figures, as matplotlib Figures (imported when first drawn: matplotlib is slow to load)
    audit         Audit: the same analyses behind one object, options set once, tables cached
"""

from __future__ import annotations

from classaudit.analysis.accuracy import by_class, overall
from classaudit.analysis.audit import Audit
from classaudit.analysis.change import class_dependence, difference, harmed_fraction, regret
from classaudit.analysis.checks import *  # noqa: F403  the messages, which tests compare exactly
from classaudit.analysis.checks import AnalysisError
from classaudit.analysis.compare import compare_axes
from classaudit.analysis.confusion import absorbers, churn, confusion_shift, false_positive_shift
from classaudit.analysis.ingest import from_predictions
from classaudit.analysis.plan import seeds_needed
from classaudit.analysis.points import choose_strength

__all__ = [
    "AnalysisError",
    "Audit",
    "absorbers",
    "by_class",
    "choose_strength",
    "churn",
    "class_dependence",
    "compare_axes",
    "confusion_shift",
    "difference",
    "false_positive_shift",
    "from_predictions",
    "harmed_fraction",
    "overall",
    "regret",
    "seeds_needed",
]
