"""The `classaudit` command: thin click commands over the library. Nothing imports this module.

Errors: a UsageError becomes one line `Error: ...` and exit status 2; anything unexpected prints one line and
exit status 1; `classaudit --debug ...` shows the traceback instead. The module is longer than 500 lines because
every command's options, help text and examples are here, so the command line reads in one place.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from classaudit.errors import EnvironmentProblem, UsageError
from classaudit.executors.registry import EXECUTORS

EPILOG_SWEEP = """\b
Examples:
  classaudit sweep studies/demo.toml
  classaudit sweep studies/demo.toml --epochs 1 --results /tmp/quick
  classaudit sweep studies/cifar10_crop.toml --set model.name=smallcnn --set train.epochs=8
  classaudit sweep studies/cifar10_crop.toml --data-dir ~/data --workers 2
  classaudit sweep studies/cifar10_crop.toml --executor ray --address auto --gpus-per-run 0.5
  classaudit sweep studies/cifar10_crop.toml --runs-per-device 4       # four runs share each GPU
  classaudit sweep studies/cifar10_crop.toml --executor slurm --partition gpu --gpus-per-run 1
  CLASSAUDIT_SLURM_CLUSTER=local classaudit sweep studies/demo.toml --executor slurm   # try it without Slurm
"""


class CliError(click.ClickException):
    exit_code = 2


class Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise CliError(str(e)) from None
        except EnvironmentProblem as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {e}", err=True)
            ctx.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError as e:
            if not _stdout_closed():  # some other pipe broke: a failure like any other
                _unexpected(ctx, e)
            # The reader went away (`classaudit status -v R | head`): stop quietly, as `git log | head` does.
            # Output still buffered would raise again at exit, so stdout now goes nowhere.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(128 + signal.SIGPIPE)
        except Exception as e:  # a bug or an environment failure: one line unless --debug
            _unexpected(ctx, e)


def _unexpected(ctx: click.Context, e: Exception) -> None:
    """A bug or an environment failure: one line and exit status 1, or the traceback under --debug."""
    if ctx.obj and ctx.obj.get("debug"):
        raise e
    click.echo(f"Error: {type(e).__name__}: {e} (run `classaudit --debug ...` for the traceback)", err=True)
    ctx.exit(1)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (a test runner's buffer)
        return False


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="classaudit")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Audit which classes pay for a regularizer's average-accuracy gain.

    \b
    Typical session:
      classaudit sweep studies/demo.toml      # train the grid (resumable)
      classaudit status results/demo          # done / pending / failed runs
      classaudit report results/demo          # HTML + CSV report under reports/demo
    """
    ctx.obj = {"debug": debug}


# ----------------------------------------------------------------------------------------------------------
# sweep


@cli.command(epilog=EPILOG_SWEEP)
@click.argument("study_file", metavar="STUDY.toml", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--results", "results", type=click.Path(path_type=Path), default=None,
              help="Results folder [default: results/<study name>].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, envvar="CLASSAUDIT_DATA",
              help="Where data sets are downloaded and cached [env CLASSAUDIT_DATA; default ~/.cache/classaudit].")
@click.option("--executor", type=click.Choice(EXECUTORS), default=EXECUTORS[0],
              show_default=True, help="Where runs execute.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Runs at once (local: processes, threads split between them; ray/slurm: max concurrent).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps ...")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Override train.epochs (same as --set train.epochs=N).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a study field, e.g. --set model.options.width=32 (repeatable; changes the run ids).")
@click.option("--retries", type=click.IntRange(0), default=0, show_default=True,
              help="Times a failed run is tried again within this sweep.")
@click.option("--yes", is_flag=True, help="Run a study larger than its study.max_runs without asking.")
@click.option("--dry-run", is_flag=True, help="List what would run; write nothing.")
@click.option("--address", default=None, help="ray: cluster address (e.g. auto or ray://host:10001).")
@click.option("--cpus-per-run", type=click.FloatRange(0), default=None,
              help="CPUs per run, also its torch threads [default: ray/slurm 1, local the cores split between "
                   "workers].")
@click.option("--gpus-per-run", type=click.FloatRange(0), default=None, help="ray/slurm: GPUs per run (ray allows 0.5).")
@click.option("--runs-per-device", default=None, metavar="N",
              help="local: N runs at once on each device (every GPU, or the CPU, its cores split between them); "
                   "ray: each run reserves 1/N of a GPU.")
@click.option("--partition", default=None, help="slurm: partition.")
@click.option("--time-limit", type=click.IntRange(1), default=None, help="slurm: minutes per run [default: 60].")
@click.option("--slurm-folder", type=click.Path(path_type=Path), default=None,
              help="slurm: where submitit keeps job files [default: <results>/slurm].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sweep(study_file: Path, results: Path | None, data_dir: Path | None, executor: str, workers: int, device: str,
          epochs: int | None, sets: tuple[str, ...], retries: int, yes: bool, dry_run: bool, address, cpus_per_run, gpus_per_run,
          runs_per_device, partition, time_limit, slurm_folder, no_progress: bool) -> None:
    """Train every run of a study that is not finished yet, and store per-class results.

    Resumable: finished runs are kept and skipped, so after Ctrl-C or a crash the same command carries on.
    Results go to a folder that one sweep at a time may write.
    """
    from classaudit.config import load_study
    from classaudit.executors import check_executor, make_executor, runs_here
    from classaudit.sweep import execute, plan, record_study

    study = load_study(study_file, [*sets, *([f"train.epochs={epochs}"] if epochs is not None else [])])
    if device != "auto":
        from classaudit.train import check_device

        check_device(device, here=runs_here(executor))
    runs_per_device = _whole_number(runs_per_device)
    if runs_per_device is not None and click.get_current_context().get_parameter_source("workers").name == "DEFAULT":
        workers = None  # as many at once as --runs-per-device allows
    options = dict(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                   runs_per_device=runs_per_device, partition=partition, time_limit=time_limit, folder=slurm_folder)
    # Every usage check comes before the data set is loaded (or downloaded) and before anything is written;
    # a dry run makes the same checks and prints the same plan, so what it approves runs.
    check_executor(executor, **options)
    results = results or Path("results") / study.name
    the_plan = plan(study, results, confirm_large=yes)
    code = _own_code(the_plan, executor, device, workers or runs_per_device or 1, cpus_per_run)  # checked here
    if dry_run:
        _print_dry_run(the_plan, code)
        return
    the_plan.check_size()
    if not the_plan.todo and not the_plan.probes:
        record_study(the_plan)  # status and report now read this study's runs
        click.echo(f"{study.name}: all {len(the_plan.runs)} runs are finished in {results}; nothing to train.")
        _print_table(results)
        return
    from classaudit.store import ResultsFolder

    ResultsFolder(results).check_unlocked()  # a second sweep into the folder stops now, not after the data loads
    # Load (download, decode, cache) the data once here, before anything is written: a missing data set is a
    # clear error now rather than a failure in every worker, and the workers then read the cache. The user's own
    # code loads its own data (and may not use torch at all).
    if not study.external:
        from classaudit.train import get_dataset

        get_dataset(study.dataset, data_dir)
        if runs_per_device is not None and runs_here(executor) and the_plan.todo:  # N runs must fit each GPU
            from classaudit.executors.local import run_devices
            from classaudit.train import check_runs_fit

            check_runs_fit(the_plan.todo[0].config, runs_per_device,
                           run_devices(None if device == "auto" else device), data_dir)
    if the_plan.transfer is not None:  # the downstream data too, before anything is written
        from classaudit.transfer import downstream_dataset

        downstream_dataset(the_plan.transfer["spec"]["dataset"], data_dir)
    if executor == "slurm" and slurm_folder is None:
        options["folder"] = results / "slurm"
    ex = make_executor(executor, workers=workers, **options)
    bar = None

    def on_start(p):
        nonlocal bar
        done = len(p.runs) - len(p.todo)
        at_once = (f"{runs_per_device} per device" if workers is None else
                   f"{workers} worker{'s' if workers > 1 else ''}" + (f", at most {runs_per_device} per device"
                                                                     if runs_per_device is not None else ""))
        probes = f", {len(p.probes)} to probe without training" if p.probes else ""
        click.echo(f"{study.name}: {len(p.runs)} runs, {done} finished, {len(p.todo)} to train{probes} "
                   f"({executor}, {at_once}) -> {results}", err=True)
        if code:
            click.echo(f"  {code}", err=True)
        for problem in sorted(p.corrupt.values()):
            click.echo(f"  damaged record, will re-train: {problem}", err=True)
        if p.stale:
            click.echo(f"  {len(p.stale)} finished run(s) in {results} belong to an earlier version of the study "
                       "(their config changed); they are kept but not used", err=True)
        if not no_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(p.todo) + len(p.probes), unit="run", dynamic_ncols=True, file=sys.stderr)

    def on_outcome(outcome):
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(outcome.task.label[:40])
        if not outcome.ok:
            click.echo(f"\n  run {outcome.task.run_id} ({outcome.task.label}) failed: {outcome.error}", err=True)

    t0 = time.perf_counter()
    try:
        # SIGTERM (kill, Slurm's scancel, a shutdown) stops the sweep as Ctrl-C does: workers are stopped too.
        main = threading.current_thread() is threading.main_thread()  # only there can handlers be set
        previous = signal.signal(signal.SIGTERM, _terminated) if main else None
        try:
            summary = execute(the_plan, ex, data_dir=str(data_dir) if data_dir else None,
                              device=None if device == "auto" else device, workers=workers or 1, retries=retries,
                              on_start=on_start, on_outcome=on_outcome)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        click.echo(f"\nInterrupted. Every finished run is kept in {results}; run the same command to continue "
                   "(runs in flight resume from their last finished epoch).", err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()
    probed = f"; probed {len(summary.probed)} finished run(s) without training" if summary.probed else ""
    click.echo(f"{study.name}: trained {len(summary.trained)} run(s) in {time.perf_counter() - t0:.0f} s; "
               f"{summary.skipped} already finished{probed}; {len(summary.failed)} failed.", err=True)
    _print_table(results)
    if summary.failed:
        click.echo(f"Failed runs are listed by `classaudit status {results}`; run the sweep again to retry them.",
                   err=True)
        sys.exit(1)


def _whole_number(text: str | None) -> int | str | None:
    """An option's text as an int when it is written as one; else the text, which the option's check refuses
    naming it as the user wrote it."""
    try:
        return None if text is None else int(text)
    except ValueError:
        return text


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


def _own_code(the_plan, executor: str, device: str, workers: int, cpus_per_run: float | None) -> str | None:
    """For a study trained by the user's own code: one line saying what each run executes (the first run's exact
    command), after checking, where the runs execute here, that its program or function is there. A study that
    names no command or function executes nothing but classaudit's own training."""
    study = the_plan.study
    if not study.external:
        return None
    from classaudit.executors import runs_here, threads_per_worker
    from classaudit.external import check_runnable, describe

    workdir = str(Path(study.path).resolve().parent)
    here = runs_here(executor)
    if here:
        check_runnable(study.train, study.path, workdir)
    run = (the_plan.todo or the_plan.runs or [None])[0]
    if run is None:
        return None
    threads = int(cpus_per_run) if cpus_per_run else threads_per_worker(workers) if here else 1
    shown_device = None if device == "auto" and here else "{device}" if device == "auto" else device  # None: here's
    return describe(run.config, run_id=run.run_id, workdir=workdir, device=shown_device,
                    threads=threads, checkpoint_dir=str(the_plan.results / "checkpoints"))


def _print_dry_run(the_plan, code: str | None) -> None:
    """What `sweep` would do: the runs to train, and what it would say about the folder and the study's size."""
    study, results = the_plan.study, the_plan.results
    if the_plan.refusal is not None:
        click.echo(f"{study.name}: {the_plan.n_runs} runs, more than study.max_runs = {study.max_runs}: the sweep "
                   "will ask for --yes (not listed)")
        return
    click.echo(f"{study.name}: {len(the_plan.runs)} runs, {len(the_plan.todo)} to train, "
               f"{len(the_plan.runs) - len(the_plan.todo)} finished in {results}")
    if code:
        click.echo(f"  {code}")
    for problem in sorted(the_plan.corrupt.values()):
        click.echo(f"  damaged record, would re-train: {problem}")
    if the_plan.stale:
        click.echo(f"  {len(the_plan.stale)} finished run(s) in {results} belong to an earlier version of the "
                   "study; they would be kept but not used")
    for run in the_plan.todo:
        click.echo(f"  {run.run_id}  {run.label}")
    for run in the_plan.probes:
        click.echo(f"  {run.run_id}  {run.label} (finished: probe only, from its stored weights)")


def _print_table(results: Path) -> None:
    """Mean test accuracy per class (rows) at each axis and strength (columns), in percent."""
    import pandas as pd

    from classaudit.store import load_results

    frame = load_results(results)
    test = frame[frame["split"] == "test"]
    if test.empty:
        return
    table = test.pivot_table(index="class_name", columns=["regularizer", "strength"], values="accuracy",
                             aggfunc="mean", sort=False) * 100
    table.loc["(mean)"] = table.mean()
    table.columns = table.columns.set_levels([f"{v:g}" for v in table.columns.levels[1]], level=1)
    seeds = test.groupby(["regularizer", "strength"])["seed"].nunique()
    count = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    click.echo(f"\nTest accuracy per class, mean over seeds ({count} per point), %:")
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.1f}".format):
        click.echo(table.to_string())


# ----------------------------------------------------------------------------------------------------------
# report


@cli.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder [default: reports/<study name>].")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="False discovery rate for calling a class harmed or helped (Benjamini-Hochberg across classes).")
@click.option("--min-effect", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Smallest change in accuracy that counts, as a fraction (0.01 = 1 point).")
@click.option("--transfer", type=click.Choice(["val", "transfer_val"]), default=None,
              help="Report the study's downstream task (its [transfer] probe), with the pre-training strength chosen "
                   "on the upstream validation split (val) or the downstream one (transfer_val) "
                   "[default out: reports/<study name>-transfer-<choice>].")
def report(results: Path, out: Path | None, alpha: float, min_effect: float, transfer: str | None) -> None:
    """Analyse a results folder; write a self-contained index.html and one CSV per table.

    \b
    Examples:
      classaudit report results/demo
      classaudit report results/cifar10_crop --out reports/cifar10_crop --min-effect 0.01
      classaudit report results/transfer_demo --transfer val   # the downstream task, chosen upstream
    """
    from classaudit.report import write_report
    from classaudit.store import ResultsFolder

    if not results.exists():
        raise UsageError(f"{results}: no such results folder")
    name = ResultsFolder(results).read_study()["name"]
    if transfer is not None:
        from classaudit.analysis import Audit

        out = out or Path("reports") / f"{name}-transfer-{transfer}"
        view = Audit.from_folder(results, alpha=alpha, min_effect=min_effect).transfer(select_on=transfer)
        path = write_report(view, out, alpha=alpha, min_effect=min_effect)
        click.echo(f"report: {path / 'index.html'}")
        return
    out = out or Path("reports") / name
    path = write_report(results, out, alpha=alpha, min_effect=min_effect)
    click.echo(f"report: {path / 'index.html'}")


@cli.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--effect", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.03, show_default=True,
              help="The loss of a class's accuracy to find, as a fraction (0.03 = 3 points).")
@click.option("--power", "power_target", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, help="The chance of finding it.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="The report's false discovery rate.")
@click.option("--harmed", "n_harmed", type=click.IntRange(1), default=3, show_default=True,
              help="How many classes of the report truly lose that much.")
def plan(results: Path, effect: float, power_target: float, alpha: float, n_harmed: int) -> None:
    """How many seeds a study needs to find a loss of --effect, from a pilot's or a finished study's seed variances.

    \b
    Examples:
      classaudit plan reports/cifar10/results --effect 0.03
      classaudit plan results/pilot --effect 0.02 --power 0.9
    """
    from classaudit.analysis import seeds_needed
    from classaudit.store import load_results

    if not results.exists():
        raise UsageError(f"{results}: no such results folder")
    table = seeds_needed(load_results(results), effect=effect, power_target=power_target, alpha=alpha,
                         n_harmed=n_harmed)
    click.echo(f"Seeds per arm to find a {effect * 100:g}-point loss of a class with power {power_target:g} (report "
               f"FDR {alpha:g}, {n_harmed} harmed classes), from the seed variances in {results}:")
    for row in table.sort_values(["seeds", "class_id"], na_position="last").itertuples(index=False):
        seeds = "more than 50" if row.seeds != row.seeds else f"{int(row.seeds)}"
        click.echo(f"  {row.class_name:<24} {row.accuracy_off:6.1%} off  seed noise {row.scale:4.2f} x binomial  "
                   f"{seeds:>12} seeds")
    worst = table["seeds"].max()
    click.echo(f"Every class: {'more than 50' if worst != worst else int(worst)} seeds; the median class: "
               f"{int(table['seeds'].median()) if table['seeds'].notna().any() else 'more than 50'}.")


@cli.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The follow-up study file to write.")
@click.option("--regularizer", "axis", default=None,
              help="The axis to remedy [default: every axis whose chosen strength harms a class].")
@click.option("--strength", type=float, default=None, help="The strength to remedy [default: the chosen one].")
@click.option("--remedies", default="exempt,own,clam", show_default=True,
              help="Which remedies to add: exempt (harmed classes left alone), own (each harmed class at its own "
                   "best strength), clam (adaptive class weights on the loss).")
@click.option("--study", "study_file", type=click.Path(path_type=Path), default=None,
              help="The study swept into RESULTS [default: the file its study.json names].")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="False discovery rate for calling a class harmed.")
def remedy(results: Path, out: Path, axis: str | None, strength: float | None, remedies: str,
           study_file: Path | None, alpha: float) -> None:
    """Write a follow-up study that tries class-conditional remedies of a harmful strength, on the same seeds.

    It holds the swept study unchanged (its runs are reused, not retrained) plus, per remedied axis, the harmed
    classes exempt, each harmed class at its own best strength, and CLAM's class weights. Sweep it into the same
    results folder; the report then shows each remedy as an axis of its own.

    \b
    Examples:
      classaudit remedy results/demo --out studies/demo_remedy.toml
      classaudit sweep studies/demo_remedy.toml --results results/demo
      classaudit remedy results/demo --regularizer color_jitter --strength 1 --remedies exempt --out fix.toml
    """
    from classaudit import remedy as remedies_module
    from classaudit.analysis import Audit
    from classaudit.config import load_study
    from classaudit.store import load_results

    if not results.exists():
        raise UsageError(f"{results}: no such results folder")
    if out.exists():
        raise UsageError(f"option --out: {out} exists; remove it or name another file")
    kinds = [k.strip() for k in remedies.split(",") if k.strip()]
    remedies_module.check_remedies(kinds)
    if strength is not None and axis is None:
        raise UsageError("option --strength: give --regularizer too (the axis the strength is on)")
    study_path = remedies_module.study_of(results, study_file)
    axes = {a.name: a.regularizer for a in load_study(study_path).axes}
    audit = Audit(load_results(results), alpha=alpha, source=str(results))  # per-class counts suffice
    proposals = remedies_module.propose(audit, axes, axis=axis, strength=strength)
    path = remedies_module.write_study(results, study_path, proposals, out, kinds)
    for p in proposals:
        click.echo(f"{p.axis} at {p.strength:g} harms {', '.join(p.harmed)}")
    click.echo(f"wrote {path}; next: classaudit sweep {path} --results {results}")


# ----------------------------------------------------------------------------------------------------------
# status and listings


@cli.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="List every run, not only problems.")
def status(results: Path, verbose: bool) -> None:
    """Show which runs of a results folder are done, pending, failed, damaged or stale.

    \b
    Example:
      classaudit status results/demo
    """
    from classaudit.store import status as get_status

    if not results.exists():
        raise UsageError(f"{results}: no such results folder")
    st = get_status(results)
    total = len(st.done) + len(st.pending)
    click.echo(f"{st.study}: {len(st.done)}/{total} done, {len(st.pending)} pending "
               f"({len(st.failed)} failed), {len(st.corrupt)} damaged, {len(st.stale)} stale")
    for rid, info in sorted(st.failed.items()):
        click.echo(f"  failed   {rid}  {st.labels.get(rid, '')}  (attempts {info.get('attempts', '?')}): "
                   f"{info.get('error', '')}")
    for rid, problem in sorted(st.corrupt.items()):
        fate = "the next sweep re-trains it" if rid in st.labels else "not in the study: no sweep will re-train it"
        click.echo(f"  damaged  {rid}  {problem}  ({fate})")
    for rid in st.stale:
        click.echo(f"  stale    {rid}  (finished, but the study no longer has this config)")
    if st.probe_missing:
        click.echo(f"  {len(st.probe_missing)} finished run(s) have no downstream probe yet; the next sweep probes "
                   "them (without training when their weights are stored)")
    if verbose:
        for rid in st.done:
            click.echo(f"  done     {rid}  {st.labels[rid]}")
        for rid in st.pending:
            if rid not in st.failed:
                click.echo(f"  pending  {rid}  {st.labels[rid]}")


@cli.command()
def regularizers() -> None:
    """List the regularizers: unit of strength, allowed range, off value, and the stage of training they act at.

    \b
    Example (their names are the [sweep.NAME] and [baseline] keys of a study):
      classaudit regularizers
    """
    from classaudit.regularizers import REGULARIZERS

    for r in REGULARIZERS.values():
        click.echo(f"{r.name:<16} off = {r.off_text}   range {r.range_text}   stage: {r.stage}")
        click.echo(f"{'':<16} unit: {r.unit}")
        click.echo(f"{'':<16} {r.description}")


@cli.command()
def datasets() -> None:
    """List the data sets a study can name, with their options.

    \b
    Example (a name goes in the study's [dataset] table, its options in [dataset.options]):
      classaudit datasets
    """
    from classaudit.config import DATASET_OPTIONS
    from classaudit.data import DESCRIPTIONS

    for name in DATASET_OPTIONS:
        opts = ", ".join(f"{k}" for k in DATASET_OPTIONS[name])
        click.echo(f"{name:<14} {DESCRIPTIONS[name]}" + (f"\n{'':<14} options: {opts}" if opts else ""))


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Also list every torchvision classifier name.")
def models(show_all: bool) -> None:
    """List the models a study can name.

    \b
    Examples (a name goes in the study's [model] table):
      classaudit models
      classaudit models --all     # also every torchvision classifier, e.g. resnet50
    """
    from classaudit.models import DESCRIPTIONS

    for name, text in DESCRIPTIONS.items():
        click.echo(f"{name:<20} {text}")
    if show_all:
        from classaudit.config import torchvision_classifiers

        click.echo("\ntorchvision classifiers: " + ", ".join(torchvision_classifiers()))


def main() -> None:
    # Reports and tables must not depend on the user's locale or a display.
    os.environ.setdefault("MPLBACKEND", "Agg")
    cli(prog_name="classaudit")


if __name__ == "__main__":
    main()
