"""classaudit: which classes pay for a regularizer's average-accuracy gain?

    import classaudit as ca
    results = ca.load_results("results/demo")        # one row per run x split x class
    ca.difference(results)                            # per-class change at the chosen strength, with q-values

Importing the package imports no torch: the analysis runs anywhere pandas and scipy do. Names are resolved
lazily from their modules on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_study": "classaudit.config",
    "expand": "classaudit.config",
    "load_results": "classaudit.store",
    "load_predictions": "classaudit.store",
    "load_runs": "classaudit.store",
    "train_one": "classaudit.train",
    "Audit": "classaudit.analysis",
    "by_class": "classaudit.analysis",
    "overall": "classaudit.analysis",
    "choose_strength": "classaudit.analysis",
    "difference": "classaudit.analysis",
    "regret": "classaudit.analysis",
    "compare_axes": "classaudit.analysis",
    "harmed_fraction": "classaudit.analysis",
    "class_dependence": "classaudit.analysis",
    "confusion_shift": "classaudit.analysis",
    "absorbers": "classaudit.analysis",
    "false_positive_shift": "classaudit.analysis",
    "churn": "classaudit.analysis",
    "from_predictions": "classaudit.analysis",
    "seeds_needed": "classaudit.analysis",
    "write_report": "classaudit.report",
    "build_report": "classaudit.report",
    "status": "classaudit.store",
    "AnalysisError": "classaudit.analysis",  # a frame or option the analysis cannot use (a ValueError)
    "UsageError": "classaudit.errors",  # any problem in what the user gave: the base of AnalysisError
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'classaudit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
