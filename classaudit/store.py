"""The results folder: the only writer of results, and the loader of the tidy frames.

Layout of a results folder:

    study.json                  the study as last swept: its name, file, and which runs sit on which axis
    runs/<run_id>/record.json   counts per class and split, curve, timings, environment, checksums
    runs/<run_id>/config.json   the run's resolved config (its hash is the run id)
    runs/<run_id>/predictions.parquet   per-sample label, prediction, probability of the true label
    runs/<run_id>/model.pt      the trained weights, kept when the study probes its runs on a downstream task
    runs/<run_id>/transfer/<transfer_id>/   the run's probe on the downstream task: record.json (downstream
                                class names, counts of transfer_val and transfer_test, the probe's L2, checksums)
                                and predictions.parquet; written with the run, or added later without training
    failed/<run_id>.json        the last error of a run that failed (removed once it succeeds)
    checkpoints/<run_id>.pt     a run's state after its last finished epoch, while it trains (resume mid-run)
    .lock                       held (flock) by the sweep writing here

A run folder is built under a temporary name and renamed into place, so a reader sees a whole run or none;
record.json carries the sha256 of the other files and of itself, so a truncated or altered record is detected
and re-run. No torch here: results load anywhere pandas does. Nothing is unpickled. The module is longer than 500
lines because a run and its downstream probe are written, verified and loaded with the same checksums and layout,
which are read in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classaudit.atomic import atomic_write, durable_write
from classaudit.analysis.schema import PREDICTIONS_COLUMNS, RESULTS_COLUMNS, SPLITS, TRANSFER_SPLITS
from classaudit.errors import UsageError
from classaudit.result import RunResult, SplitPredictions, TransferResult

FORMAT = 1


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _study_problem(study: Any) -> str | None:
    """What is wrong with a parsed study.json (the shape `write_study` writes), or None."""
    if not isinstance(study, dict):
        return f"holds a JSON {type(study).__name__}, not an object with fields 'name' and 'runs'"
    if not isinstance(study.get("name"), str):
        return f"field 'name' is {study.get('name')!r}; it must be the study's name (text)"
    if not isinstance(study.get("runs"), dict):
        return f"field 'runs' is {_short(study.get('runs'))}; it must map each run id to its seed, label and points"
    for rid, run in study["runs"].items():
        points = run.get("points") if isinstance(run, dict) else None
        # A factorial study's interaction runs (two regularizers on at once) are on no axis: points = [].
        if not (isinstance(run, dict) and isinstance(run.get("seed"), int) and isinstance(run.get("label"), str)
                and isinstance(points, list)
                and all(isinstance(p, dict) and {"axis", "strength", "is_off"} <= p.keys() for p in points)):
            return (f"field 'runs.{rid}' is {_short(run)}; it must hold 'seed' (a whole number), 'label' (text) "
                    "and 'points' (a list of {axis, strength, is_off})")
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------------------------------------------------
# Writing.


class ResultsFolder:
    """A results folder. Reading needs nothing; writing needs the lock (`with folder.lock(): ...`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            hint = " (it is a study file: its results are in results/<study name>, or where --results put them)" \
                if self.path.suffix == ".toml" else ""
            raise UsageError(f"{self.path}: results folder is a file{hint}; give the path of a folder")
        self.runs_dir = self.path / "runs"
        self.failed_dir = self.path / "failed"
        self.checkpoint_dir = self.path / "checkpoints"  # written by the runs themselves, removed once stored

    # The lock ------------------------------------------------------------------------------------------
    def lock(self) -> _Lock:
        return _Lock(self.path)

    def check_unlocked(self) -> None:
        """Raise the lock's UsageError now if another sweep holds the folder, writing nothing: a sweep checks
        this before it spends minutes loading data, then takes the lock itself."""
        import fcntl

        if self.path.is_dir() and not os.access(self.path, os.W_OK | os.X_OK):
            raise UsageError(_CANNOT_WRITE.format(folder=self.path, why="permission denied"))
        try:
            fd = os.open(self.path / ".lock", os.O_RDONLY)
        except OSError:
            return  # no lock file (a new folder), or one this process cannot read: the lock itself will tell
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            raise UsageError(_LOCKED.format(folder=self.path, holder=_holder(fd))) from None
        finally:
            os.close(fd)

    # Study and membership ------------------------------------------------------------------------------
    def write_study(self, study_name: str, study_path: str, runs: Iterable[Any],
                    transfer: Mapping[str, Any] | None = None) -> None:
        """`transfer`: the study's downstream task ({"id", "spec"}), whose probes the loaders then read."""
        body = {
            "format": FORMAT,
            "name": study_name,
            "file": study_path,
            "runs": {r.run_id: {"seed": r.seed, "label": r.label,
                                "points": [p.__dict__ for p in r.points]} for r in runs},
        }
        if transfer is not None:  # absent otherwise: a study without one writes the file it always wrote
            body["transfer"] = dict(transfer)
        atomic_write(self.path / "study.json", json.dumps(body, indent=1, sort_keys=True))

    def read_study(self) -> dict[str, Any]:
        path = self.path / "study.json"
        if not path.exists():
            inside = self.path / "results"
            if (inside / "study.json").exists():  # a committed report folder holds its results one level down
                raise UsageError(f"{self.path}: not a classaudit results folder (no study.json); did you mean "
                                 f"{inside}?")
            raise UsageError(f"{self.path}: not a classaudit results folder (no study.json); run "
                             "`classaudit sweep STUDY.toml --results " + f"{self.path}` first")
        try:
            study = json.loads(path.read_text("utf-8"))
        except (ValueError, OSError) as e:
            raise UsageError(f"{path}: cannot be read ({e}); re-run the sweep to rewrite it") from None
        problem = _study_problem(study)
        if problem:
            raise UsageError(f"{path}: {problem}; re-run the sweep to rewrite it")
        return study

    # Runs ----------------------------------------------------------------------------------------------
    def write_run(self, result: RunResult, seed: int) -> Path:
        """Store one finished run atomically; returns its folder."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        final = self.runs_dir / result.run_id
        tmp = self.runs_dir / f".tmp-{result.run_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            config_bytes = json.dumps(result.config, indent=1, sort_keys=True).encode()
            durable_write(tmp / "config.json", config_bytes)
            pred_bytes = _predictions_bytes(result.splits)
            durable_write(tmp / "predictions.parquet", pred_bytes)
            record = {
                "format": FORMAT, "run_id": result.run_id, "seed": seed, "class_names": result.class_names,
                "counts": _counts(result.splits, len(result.class_names)), "curve": result.curve,
                "timings": result.timings, "environment": result.environment,
                "files": {"config.json": _sha256(config_bytes), "predictions.parquet": _sha256(pred_bytes)},
            }
            if result.weights is not None:
                durable_write(tmp / "model.pt", result.weights)
                record["files"]["model.pt"] = _sha256(result.weights)
            if result.transfer is not None:
                _write_probe_files(tmp / "transfer" / result.transfer.transfer_id, result.run_id, result.transfer)
            record["checksum"] = _sha256(_canonical(record))
            durable_write(tmp / "record.json", json.dumps(record, indent=1, sort_keys=True).encode())
            if final.exists():  # a damaged earlier copy: move it aside first, rename cannot replace a folder
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(self.runs_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (self.failed_dir / f"{result.run_id}.json").unlink(missing_ok=True)
        return final

    def write_probe(self, run_id: str, transfer: TransferResult) -> Path:
        """Add a downstream probe to a stored run, atomically (a folder renamed into place); the run's own files
        are not touched. Returns the probe's folder."""
        parent = self.runs_dir / run_id / "transfer"
        parent.mkdir(parents=True, exist_ok=True)
        final = parent / transfer.transfer_id
        tmp = parent / f".tmp-{transfer.transfer_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _write_probe_files(tmp, run_id, transfer)
            if final.exists():  # a damaged earlier copy
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (self.failed_dir / f"{run_id}.json").unlink(missing_ok=True)
        return final

    def read_probe(self, run_id: str, transfer_id: str) -> dict[str, Any]:
        """The verified record of a run's probe. Raises CorruptRecord naming what is wrong."""
        record = _verified_record(self.runs_dir / run_id / "transfer" / transfer_id)
        if record.get("run_id") != run_id or record.get("transfer_id") != transfer_id:
            raise CorruptRecord(self.runs_dir / run_id / "transfer" / transfer_id / "record.json",
                                "names another run or probe")
        return record

    def verified_probes(self, run_ids: Iterable[str], transfer_id: str) -> dict[str, dict]:
        """{run_id: probe record} of the runs whose probe `transfer_id` is stored intact."""
        out = {}
        for rid in run_ids:
            try:
                out[rid] = self.read_probe(rid, transfer_id)
            except CorruptRecord:
                pass
        return out

    def write_failure(self, run_id: str, label: str, error: str, tb: str, attempts: int) -> None:
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        body = {"run_id": run_id, "label": label, "error": error, "traceback": tb, "attempts": attempts,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write(self.failed_dir / f"{run_id}.json", json.dumps(body, indent=1, sort_keys=True))

    def remove_checkpoint(self, run_id: str) -> None:
        (self.checkpoint_dir / f"{run_id}.pt").unlink(missing_ok=True)

    def clean_temporaries(self) -> None:
        """Remove half-written run folders left by a killed sweep (only ever called under the lock)."""
        if self.runs_dir.is_dir():
            for p in [*self.runs_dir.glob(".tmp-*"), *self.runs_dir.glob("*/transfer/.tmp-*")]:
                shutil.rmtree(p, ignore_errors=True)

    # Reading -------------------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def read_record(self, run_id: str) -> dict[str, Any]:
        """The verified record of a run. Raises CorruptRecord naming what is wrong."""
        folder = self.runs_dir / run_id
        record = _verified_record(folder)
        if record.get("run_id") != run_id:
            raise CorruptRecord(folder / "record.json", f"names run {record.get('run_id')}, not {run_id}")
        return record

    def read_labels(self, run_id: str) -> dict[str, np.ndarray]:
        """Each split's true labels of a stored run, in image order: the images every run of its study predicts."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.runs_dir / run_id / "predictions.parquet", columns=["split", "label"]).to_pandas()
        return {split: part["label"].to_numpy(np.int64) for split, part in table.groupby("split", sort=False)}

    def verified_runs(self) -> tuple[dict[str, dict], dict[str, str]]:
        """({run_id: record} of every intact run, {run_id: problem} of damaged ones)."""
        good, bad = {}, {}
        for rid in self.run_ids():
            try:
                good[rid] = self.read_record(rid)
            except CorruptRecord as e:
                bad[rid] = str(e)
        return good, bad

    def failures(self) -> dict[str, dict]:
        out = {}
        if self.failed_dir.is_dir():
            for p in sorted(self.failed_dir.glob("*.json")):
                try:
                    out[p.stem] = json.loads(p.read_text("utf-8"))
                except (ValueError, OSError):
                    out[p.stem] = {"error": f"{p}: unreadable failure record"}
        return out


def _verified_record(folder: Path) -> dict[str, Any]:
    """A folder's record.json, its own checksum and its files' checked. Raises CorruptRecord naming what is wrong."""
    try:
        record = json.loads((folder / "record.json").read_bytes())
    except FileNotFoundError:
        raise CorruptRecord(folder / "record.json", "missing") from None
    except (ValueError, OSError) as e:
        raise CorruptRecord(folder / "record.json", f"unreadable ({e})") from None
    if not isinstance(record, dict) or "checksum" not in record:
        raise CorruptRecord(folder / "record.json", "has no checksum")
    claimed = record.pop("checksum")
    if _sha256(_canonical(record)) != claimed:
        raise CorruptRecord(folder / "record.json", "checksum mismatch (altered or truncated)")
    for name, digest in record["files"].items():
        try:
            data = (folder / name).read_bytes()
        except OSError:
            raise CorruptRecord(folder / name, "missing") from None
        if _sha256(data) != digest:
            raise CorruptRecord(folder / name, "checksum mismatch (altered or truncated)")
    return record


def _predictions_bytes(splits: Mapping[str, SplitPredictions]) -> bytes:
    """The per-image predictions of some splits as Parquet bytes (split, index, label, pred, p_true)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "split": pa.array([s for s, p in splits.items() for _ in range(len(p.label))], type=pa.string()),
        "index": pa.array(np.concatenate([np.arange(len(p.label)) for p in splits.values()]).astype(np.int32)),
        "label": pa.array(np.concatenate([p.label for p in splits.values()]).astype(np.int32)),
        "pred": pa.array(np.concatenate([p.pred for p in splits.values()]).astype(np.int32)),
        "p_true": pa.array(np.concatenate([p.p_true for p in splits.values()]).astype(np.float32)),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _counts(splits: Mapping[str, SplitPredictions], k: int) -> dict[str, dict[str, list[int]]]:
    counts = {}
    for split, p in splits.items():
        n, correct = p.counts(k)
        counts[split] = {"n": n.tolist(), "correct": correct.tolist()}
    return counts


def _write_probe_files(folder: Path, run_id: str, transfer: TransferResult) -> None:
    """A probe's predictions.parquet and record.json (with checksums) into a new folder."""
    folder.mkdir(parents=True)
    pred_bytes = _predictions_bytes(transfer.splits)
    durable_write(folder / "predictions.parquet", pred_bytes)
    record = {"format": FORMAT, "run_id": run_id, "transfer_id": transfer.transfer_id, "spec": transfer.spec,
              "class_names": transfer.class_names, "counts": _counts(transfer.splits, len(transfer.class_names)),
              "probe": transfer.probe, "timings": transfer.timings,
              "files": {"predictions.parquet": _sha256(pred_bytes)}}
    record["checksum"] = _sha256(_canonical(record))
    durable_write(folder / "record.json", json.dumps(record, indent=1, sort_keys=True).encode())


class CorruptRecord(Exception):
    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_LOCKED = ("{folder}: another sweep is writing to this results folder ({holder}); wait for it to finish, or use "
           "another --results folder")
_CANNOT_WRITE = ("{folder}: cannot write to the results folder ({why}); choose another --results folder or fix its "
                 "permissions")


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it into the lock file."""
    return os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "unknown process"


class _Lock:
    """An exclusive flock on <folder>/.lock. The kernel drops it when the holder dies, so a lock left by a
    killed sweep is free again at once; the file keeps the holder's pid, host and command for the message."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UsageError(_CANNOT_WRITE.format(folder=self.folder, why=e.strerror)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise UsageError(_LOCKED.format(folder=self.folder, holder=holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ----------------------------------------------------------------------------------------------------------
# Status.


@dataclass
class Status:
    study: str
    done: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    failed: dict[str, dict] = field(default_factory=dict)
    corrupt: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)  # finished runs the current study no longer has
    labels: dict[str, str] = field(default_factory=dict)
    # Finished runs without their downstream probe, when the study has a [transfer] table (done: their training).
    probe_missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """One reading of a results folder: its study and the run records verified at that moment. The report
    loads every frame from one snapshot, so that a sweep storing runs meanwhile cannot make them disagree.
    Every loader below takes a snapshot wherever it takes a path."""

    folder: ResultsFolder
    study: dict[str, Any]
    good: dict[str, dict]  # run id -> verified record
    bad: dict[str, str]  # run id -> what is damaged
    failures: dict[str, dict]
    probes: dict[str, dict] = field(default_factory=dict)  # run id -> verified record of its downstream probe


def snapshot(path: str | Path | Snapshot) -> Snapshot:
    if isinstance(path, Snapshot):
        return path
    folder = ResultsFolder(path)
    if not folder.path.is_dir():
        raise UsageError(f"{folder.path}: no such results folder")
    study = folder.read_study()
    good, bad = folder.verified_runs()
    probes = folder.verified_probes(good, study["transfer"]["id"]) if isinstance(study.get("transfer"), dict) else {}
    return Snapshot(folder, study, good, bad, folder.failures(), probes)


def classify(study: str, labels: dict[str, str], good: dict[str, dict], bad: dict[str, str],
             failures: dict[str, dict], probed: Iterable[str] | None = None) -> Status:
    """The one classification of a folder's runs against the runs a study wants (`labels`, id -> label, in the
    study's order): done, pending (failed among them), damaged and stale. `classaudit status` shows it and a
    sweep's plan trains its pending runs. `probed`: the runs whose downstream probe is stored, when the study has
    one; the done runs not among them are `probe_missing`."""
    st = Status(study=study, labels=dict(labels))
    for rid in labels:
        (st.done if rid in good else st.pending).append(rid)
    st.failed = {rid: failures[rid] for rid in st.pending if rid in failures}
    st.corrupt = dict(bad)
    st.stale = sorted(set(good) - set(labels))
    if probed is not None:
        probed = set(probed)
        st.probe_missing = [rid for rid in st.done if rid not in probed]
    return st


def status(path: str | Path | Snapshot) -> Status:
    """The state of a results folder, against the study it last recorded (its study.json)."""
    snap = snapshot(path)
    labels = {rid: run["label"] for rid, run in snap.study["runs"].items()}
    probed = snap.probes if isinstance(snap.study.get("transfer"), dict) else None
    return classify(snap.study["name"], labels, snap.good, snap.bad, snap.failures, probed)


# ----------------------------------------------------------------------------------------------------------
# Loading tidy frames.

RESULT_COLUMNS = list(RESULTS_COLUMNS)
PREDICTION_COLUMNS = list(PREDICTIONS_COLUMNS)


def _memberships(path: str | Path | Snapshot, strict: bool) -> tuple[ResultsFolder, dict, dict[str, dict]]:
    return _members(snapshot(path), strict)


def _members(snap: Snapshot, strict: bool) -> tuple[ResultsFolder, dict, dict[str, dict]]:
    if strict and snap.bad:
        damaged = "; ".join(sorted(snap.bad.values()))
        raise UsageError(f"{snap.folder.path}: damaged run records: {damaged}. Run the sweep again to re-train "
                         "them (or pass strict=False to skip them)")
    return snap.folder, snap.study, {rid: snap.good[rid] for rid in snap.study["runs"] if rid in snap.good}


def load_results(path: str | Path | Snapshot, *, strict: bool = False) -> pd.DataFrame:
    """Load a results folder as a tidy frame: one row per (run, axis, split, class).

    A run on several axes (the shared off point) appears once per axis, with that axis' off strength and
    is_off=True. Damaged records are skipped (strict=True raises instead); runs the study no longer has are
    left out. Columns: study, run_id, regularizer, strength, is_off, seed, split, class_id, class_name, n,
    correct, accuracy.

    Example
    -------
    >>> import classaudit as ca
    >>> results = ca.load_results("results/demo")          # doctest: +SKIP
    >>> results.query("split == 'test'").groupby(["regularizer", "strength"]).accuracy.mean()  # doctest: +SKIP
    """
    snap = snapshot(path)
    folder, study, records = _members(snap, strict)
    rows = []
    for rid in sorted(records):
        rec, points = records[rid], study["runs"][rid]["points"]
        probe = snap.probes.get(rid, {})
        # The downstream probe's splits carry the downstream classes (ids and names of their own).
        splits = [(split, rec["counts"], rec["class_names"]) for split in SPLITS] + [
            (split, probe["counts"], probe["class_names"]) for split in TRANSFER_SPLITS if probe]
        for point in points:
            for split, counts, names in splits:
                if split not in counts:
                    continue
                n, correct = counts[split]["n"], counts[split]["correct"]
                for k, name in enumerate(names):
                    rows.append((study["name"], rid, point["axis"], point["strength"], point["is_off"], rec["seed"],
                                 split, k, name, n[k], correct[k]))
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS[:-1])
    frame["accuracy"] = frame["correct"] / frame["n"].where(frame["n"] > 0)
    return _typed(frame).sort_values(["regularizer", "strength", "seed", "split", "class_id"],
                                     ignore_index=True)


def load_predictions(path: str | Path | Snapshot, *, strict: bool = False) -> pd.DataFrame:
    """Per-sample predictions: one row per (run, axis, split, image); `index` is the image's position in its
    split, the same image across runs. Columns: study, run_id, regularizer, strength, is_off, seed, split,
    index, label, pred, p_true."""
    import pyarrow.parquet as pq

    snap = snapshot(path)
    folder, study, records = _members(snap, strict)
    parts = []
    for rid in sorted(records):
        table = pq.read_table(folder.runs_dir / rid / "predictions.parquet").to_pandas()
        if rid in snap.probes:
            probe = folder.runs_dir / rid / "transfer" / snap.probes[rid]["transfer_id"] / "predictions.parquet"
            table = pd.concat([table, pq.read_table(probe).to_pandas()], ignore_index=True)
        for point in study["runs"][rid]["points"]:
            part = table.copy()
            part.insert(0, "study", study["name"])
            part.insert(1, "run_id", rid)
            part.insert(2, "regularizer", point["axis"])
            part.insert(3, "strength", point["strength"])
            part.insert(4, "is_off", point["is_off"])
            part.insert(5, "seed", records[rid]["seed"])
            parts.append(part)
    if not parts:
        return _typed(pd.DataFrame({c: [] for c in PREDICTION_COLUMNS}))
    frame = pd.concat(parts, ignore_index=True)[PREDICTION_COLUMNS]
    return _typed(frame).sort_values(["regularizer", "strength", "seed", "split", "index"], ignore_index=True)


def load_runs(path: str | Path | Snapshot, *, strict: bool = False) -> pd.DataFrame:
    """One row per finished run: its settings, accuracies, time and environment (the report's run table)."""
    folder, study, records = _memberships(path, strict)
    rows = []
    for rid in sorted(records):
        rec = records[rid]
        row = {"run_id": rid, "label": study["runs"][rid]["label"], "seed": rec["seed"],
               "axes": ", ".join(sorted({p["axis"] for p in study["runs"][rid]["points"]}))}
        for split in SPLITS:
            if split in rec["counts"]:
                n, c = np.array(rec["counts"][split]["n"]), np.array(rec["counts"][split]["correct"])
                seen = n > 0  # a class with no images in this split has no accuracy (as in load_results)
                row[f"{split}_accuracy"] = float(np.mean(c[seen] / n[seen])) if seen.any() else float("nan")
        row["train_seconds"] = rec["timings"].get("train_seconds")
        row["epochs"] = len(rec["curve"])
        row["final_train_loss"] = rec["curve"][-1]["train_loss"] if rec["curve"] else None
        for key in ("device", "torch", "torchvision", "classaudit"):
            row[key] = rec["environment"].get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    types = {"strength": "float64", "is_off": "bool", "seed": "int64", "class_id": "int64", "n": "int64",
             "correct": "int64", "index": "int64", "label": "int64", "pred": "int64", "p_true": "float64"}
    return frame.astype({k: v for k, v in types.items() if k in frame.columns})


def run_config(path: str | Path, run_id: str) -> Mapping[str, Any]:
    return json.loads((Path(path) / "runs" / run_id / "config.json").read_text("utf-8"))
