"""From audit to remedy: a follow-up study that trains class-conditional versions of a harmful strength.

`propose` reads an audit: the classes a regularizer harms at a strength (its chosen one by default) and each
harmed class's own best strength. `write_study` writes the study that was swept, unchanged (every existing run
keeps its id, so nothing is retrained), plus one axis per remedy, each at [off, strength]:

    <axis>_exempt   the harmed classes exempt: their images are never changed by the regularizer
    <axis>_own      each harmed class at its own best strength (from `regret`), the others at the strength
    <axis>_clam     the uniform strength, with CLAM's adaptive class weights on the loss (Jiang, Ban & Weng 2025)

`classaudit sweep` of the written study into the same results folder then trains only the remedies, and
`classaudit.analysis.compare_axes` tests each remedy against the uniform strength, class by class. No torch
here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from classaudit.analysis.audit import Audit
from classaudit.config import expand, load_study
from classaudit.errors import UsageError
from classaudit.regularizers import REGULARIZERS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REMEDIES = ("exempt", "own", "clam")


@dataclass(frozen=True)
class Proposal:
    """The remedies of one axis at one strength: the classes it harms there and their own best strengths."""

    axis: str  # the axis' name in the study (the results' `regularizer` column)
    regularizer: str  # the regularizer it sweeps
    strength: float
    off: float
    harmed: tuple[str, ...]  # class names, by class id
    best: Mapping[str, float] = field(default_factory=dict)  # harmed class -> its own best strength

    def axes(self, remedies: Sequence[str] = REMEDIES) -> dict[str, dict[str, Any]]:
        """The [sweep.<name>] tables of the remedies."""
        base = {"regularizer": self.regularizer, "strengths": [self.off, self.strength]}
        out = {}
        if not REGULARIZERS[self.regularizer].per_class:  # weight decay, dropout, ...: no image is its own
            return {f"{self.axis}_clam": {**base, "class_weights": "clam"}} if "clam" in remedies else {}
        if "exempt" in remedies:
            out[f"{self.axis}_exempt"] = {**base, "exempt": list(self.harmed)}
        own = {c: s for c, s in self.best.items() if s != self.strength}
        same_as_exempt = "exempt" in remedies and set(own.values()) == {self.off} and set(own) == set(self.harmed)
        # A class already best at the strength needs no remedy of its own; classes all best at off are exempt.
        if "own" in remedies and own and not same_as_exempt:
            out[f"{self.axis}_own"] = {**base, "class_strength": own}
        if "clam" in remedies:
            out[f"{self.axis}_clam"] = {**base, "class_weights": "clam"}
        return out


def propose(audit: Audit, axes: Mapping[str, str], *, axis: str | None = None,
            strength: float | None = None) -> list[Proposal]:
    """The remedies an audit calls for. `axes` maps each axis name to its regularizer (the study's). With `axis`,
    that axis only (at `strength`, or its chosen one); without, every axis whose chosen strength harms a class."""
    if axis is not None and axis not in audit.regularizers:
        raise UsageError(f"option --regularizer: value {json.dumps(axis)} is not an axis of {audit.source}; "
                         f"axes: {', '.join(audit.regularizers)}")
    if strength is not None and axis is None:
        raise UsageError("option --strength: give --regularizer too (the axis the strength is on)")
    names = [axis] if axis is not None else audit.regularizers
    proposals = []
    for name in names:
        s = strength if strength is not None else audit.chosen_strength(name)
        if s not in audit.strengths[name]:
            raise UsageError(f"option --strength: value {s:g} is not a strength of {name} in {audit.source}; "
                             f"strengths: {', '.join(f'{v:g}' for v in audit.strengths[name])}")
        if s == audit.off[name]:
            if strength is not None:
                raise UsageError(f"option --strength: value {s:g} is the off point of {name}, the reference a "
                                 "remedy is measured against; give a strength the regularizer is on at")
            if axis is not None:
                raise UsageError(f"{name}: validation chose its off point ({s:g}), which harms no class; give "
                                 "--strength to remedy another strength")
            continue
        diff = audit.difference(strength={name: s})
        harmed = diff[diff["harmed"]].sort_values("class_id")
        if harmed.empty:
            if axis is not None:
                raise UsageError(f"{name} at {s:g} harms no class in {audit.source} (false discovery rate "
                                 f"{audit.alpha:g}); there is nothing to remedy")
            continue
        regret = audit.regret(strength={name: s}).set_index("class_name")
        best = {c: float(regret.loc[c, "best_strength"]) for c in harmed["class_name"]
                if pd.notna(regret.loc[c, "best_strength"])}
        proposals.append(Proposal(name, axes[name], float(s), audit.off[name],
                                  tuple(harmed["class_name"]), best))
    if not proposals:
        raise UsageError(f"{audit.source}: no axis harms a class at its chosen strength (false discovery rate "
                         f"{audit.alpha:g}); name --regularizer and --strength to remedy another strength")
    return proposals


def study_of(results: str | Path, study: str | Path | None = None) -> Path:
    """The study file a results folder was swept from (its study.json names it), or `study` when given."""
    from classaudit.store import ResultsFolder  # its read_study names a missing or damaged study.json

    path = Path(study) if study is not None else Path(ResultsFolder(results).read_study().get("file", ""))
    if not path.is_file():
        given = "option --study" if study is not None else f"{Path(results) / 'study.json'} names"
        raise UsageError(f"{given} {path}, which is not a study file here; pass --study STUDY.toml (the study "
                         f"swept into {results})")
    return path


def check_remedies(remedies: Sequence[str]) -> None:
    if not remedies or any(r not in REMEDIES for r in remedies):
        raise UsageError(f"option --remedies: value {json.dumps(','.join(remedies))} is not allowed; expected one "
                         f"or more of {', '.join(REMEDIES)}, separated by commas")


def write_study(results: str | Path, study_file: str | Path, proposals: Sequence[Proposal], out: str | Path,
                remedies: Sequence[str] = REMEDIES) -> Path:
    """Write the follow-up study: the swept study with the remedies' axes added. Checks, before writing, that it
    parses and still contains every run finished in `results` (so the sweep reuses them)."""
    check_remedies(remedies)
    raw = tomllib.loads(Path(study_file).read_text("utf-8"))
    name = f"{raw['study']['name']}_remedy"[:64]
    raw["study"] = {**raw["study"], "name": name,
                    "description": f"Class-conditional remedies of {raw['study']['name']}, on its seeds."}
    added: dict[str, Any] = {}
    for p in proposals:
        added.update(p.axes(remedies))
    taken = sorted(set(added) & set(raw["sweep"]))
    if taken:
        raise UsageError(f"{study_file}: already has the axis {taken[0]}; remove it or write the remedy of a "
                         "study without it")
    if not added:
        raise UsageError(f"option --remedies: {','.join(remedies)} writes nothing here: exempt and own act image by "
                         "image (not on weight decay, dropout and the other whole-model regularizers), and own only "
                         "where a harmed class is best at another strength; add clam")
    raw["sweep"] = {**raw["sweep"], **added}
    header = [
        f"# Follow-up study written by `classaudit remedy {results}` from {study_file}.",
        "# The swept study's axes are unchanged (their runs keep their ids and are not retrained); each remedy is",
        "# an axis at [off, strength]: _exempt leaves the harmed classes alone, _own gives each harmed class its",
        "# own best strength, _clam adds CLAM's adaptive class weights. Harmed classes:",
        *[f"#   {p.axis} at {p.strength:g}: {', '.join(p.harmed)}" for p in proposals],
        f"# Sweep it into the same folder: classaudit sweep {out} --results {results}",
    ]
    text = "\n".join(header) + "\n\n" + dumps(raw)
    out = Path(out)
    _check_reuse(text, out, results, study_file)
    from classaudit.atomic import atomic_write

    atomic_write(out, text)
    return out


def _check_reuse(text: str, out: Path, results: str | Path, study_file: str | Path) -> None:
    """The written study parses, and expands to every run of the swept study (so none is retrained)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / out.name
        probe.write_text(text, "utf-8")
        new = {r.run_id for r in expand(load_study(probe))}
    missing = sorted({r.run_id for r in expand(load_study(study_file))} - new)
    if missing:  # a bug, not a usage error: the remedy axes must leave the study's runs as they were
        raise RuntimeError(f"the remedy study of {results} would not reuse run(s) {', '.join(missing[:3])}")


# ----------------------------------------------------------------------------------------------------------
# TOML: the few shapes a study holds (tables of numbers, text, booleans, lists and inline tables).

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(document: Mapping[str, Any]) -> str:
    """A study as TOML: each table as [a.b], nested tables below it, inline tables for tables in axes."""
    lines: list[str] = []

    def table(prefix: str, body: Mapping[str, Any], inline_below: bool) -> None:
        plain = {k: v for k, v in body.items() if inline_below or not isinstance(v, Mapping)}
        if prefix and (plain or not body):  # a table holding only tables needs no header of its own
            lines.extend(["", f"[{prefix}]"] if lines else [f"[{prefix}]"])
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in plain.items())
        for k, v in body.items():
            if k not in plain:
                sub = f"{prefix}.{_key(k)}" if prefix else _key(k)
                table(sub, v, inline_below=prefix == "sweep")
    table("", document, inline_below=False)
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
