"""One prepared check of a machine with one NVIDIA GPU, in under 8 minutes; prints a summary at the end.

    python benchmarks/device_check.py            # on the GPU machine
    python benchmarks/device_check.py --cpu      # the same steps at tiny sizes on the CPU (CI runs this)

It installs nothing: what is missing (pytest, the CIFAR-10 copy) is said and its step done without it.

1. the machine: torch, CUDA, the GPU and its free memory;
2. the CUDA-only tests (`pytest -m cuda`);
3. the GPU study recipe trained once (`studies/cifar10_all.toml`'s off point, seed 0): time and accuracy, on
   CIFAR-10 when the data folder holds it (nothing is downloaded), else on `shapes` at 32x32 (said so);
4. the augmentation benchmark on the GPU (`benchmarks/bench_augment.py --device cuda`);
5. runs per GPU-hour at 1, 2 and 4 runs per device: the same short runs swept with `--runs-per-device N`,
   start-up of the workers included.

--cpu: tiny data and model, one epoch, 1 and 2 runs per device on the CPU, no tests; for CI, where it checks
that the script runs (its figures mean nothing there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's classaudit, and bench_augment beside this file
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (for CI)")
    ap.add_argument("--data-dir", default=None, help="where the CIFAR-10 copy is [default: classaudit's]")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the runs of step 5 [GPU 2, CPU 1]")
    args = ap.parse_args(argv)
    import torch

    summary: dict = {}
    t_start = time.perf_counter()
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("device_check: no CUDA device here; run with --cpu for the CPU-safe steps")

    print("== 1. the machine")
    summary["torch"] = torch.__version__
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        summary["gpu"] = torch.cuda.get_device_name()
        summary["gpu memory free GiB"] = round(free / 2**30, 1)
        print(f"   {summary['gpu']}, CUDA {torch.version.cuda}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    print(f"   torch {torch.__version__}, {os.cpu_count()} CPUs")

    print("== 2. the CUDA-only tests")
    summary["cuda tests"] = _cuda_tests() if not args.cpu else "not run (--cpu)"
    print(f"   {summary['cuda tests']}")

    print("== 3. the GPU study recipe, trained once")
    summary.update(_recipe_once(args, device))

    print("== 4. augmentation on the device")
    import bench_augment

    figures = bench_augment.main(["--device", device, "--repeats", "3" if args.cpu else "20",
                                  "--batch", "32" if args.cpu else "1024",
                                  "--threads", "1" if args.cpu else str(os.cpu_count() or 1)])
    summary["augment images/s"] = round(figures["classaudit batched, per-sample"])
    summary["augmentation overhead %"] = round(figures["overhead %"], 1)

    print("== 5. runs per GPU-hour at 1, 2 and 4 runs per device")
    summary["runs per hour"] = _runs_per_hour(args, device)

    summary["seconds"] = round(time.perf_counter() - t_start)
    print("== summary")
    print(json.dumps(summary, indent=1))
    return summary


def _cuda_tests() -> str:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return "not run: pytest is not installed (pip install 'classaudit[test]')"
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                           "tests"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return f"{'passed' if done.returncode == 0 else 'FAILED'}: {last}"


def _study(args, device: str) -> tuple[dict, str]:
    """The GPU recipe's off point (seed 0) as a resolved config, and what it trains on."""
    from classaudit.config import load_study, resolve
    from classaudit.data import default_data_dir

    study = load_study(ROOT / "studies" / "cifar10_all.toml")
    config = resolve(study, {}, 0)
    data_dir = Path(args.data_dir or default_data_dir())
    have_cifar = (data_dir / "cifar-10-batches-py").is_dir()
    if args.cpu or not have_cifar:
        size = 16 if args.cpu else 32
        n = 10 if args.cpu else 5000
        config["dataset"] = {**config["dataset"], "name": "shapes",
                             "options": {"n_train_per_class": n, "n_test_per_class": n // 5, "size": size,
                                         "seed": 0}}
        what = f"shapes {size}x{size}, {n} images a class (no CIFAR-10 in {data_dir}; nothing is downloaded)"
    else:
        what = f"CIFAR-10 from {data_dir}"
    if args.cpu:
        # width 8: at width 4 this torch's CPU kernels for the CIFAR ResNet-18 abort ("double free") with one
        # thread, as a worker of two sharing two cores has
        config["model"] = {"name": config["model"]["name"], "options": {"width": 8}}
        config["train"] = {**config["train"], "epochs": 1, "batch_size": 32, "eval_batch_size": 64}
    return config, what


def _recipe_once(args, device: str) -> dict:
    from classaudit.train import train_one

    config, what = _study(args, device)
    print(f"   {config['model']['name']}, {config['train']['epochs']} epochs, on {what}")
    t = time.perf_counter()
    result = train_one(config, run_id="device_check", data_dir=args.data_dir, device=device)
    seconds = time.perf_counter() - t
    test = result.splits["test"]
    accuracy = float((test.pred == test.label).mean())
    print(f"   {seconds:.1f} s, test accuracy {accuracy:.2%}, "
          f"{result.timings['train_images_per_second']:,.0f} training images/s")
    return {"recipe": f"{config['model']['name']} on {what.split(' (')[0]}", "recipe seconds": round(seconds, 1),
            "recipe test accuracy": round(accuracy, 4)}


def _runs_per_hour(args, device: str) -> dict[str, float]:
    """Sweep the same short runs with 1, 2 and 4 runs per device (CPU: 1 and 2); runs per hour of wall time."""
    config, _ = _study(args, device)
    epochs = args.epochs or (1 if args.cpu else 2)
    counts = (1, 2) if args.cpu else (1, 2, 4)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            runs = 2 * n  # two rounds of runs at once, so that start-up counts once in two
            study = _study_file(Path(tmp) / f"rpd{n}.toml", config, epochs, seeds=n)
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "classaudit.cli", "sweep", str(study), "--results",
                                   str(Path(tmp) / f"results{n}"), "--runs-per-device", str(n), "--device",
                                   device, "--no-progress", *(["--data-dir", args.data_dir] if args.data_dir else [])],
                                  cwd=ROOT, capture_output=True, text=True, timeout=300)
            seconds = time.perf_counter() - t
            if done.returncode != 0:
                failed = [line for line in done.stderr.splitlines() if " failed: " in line] or done.stderr.splitlines()
                print(f"   {n} per device: FAILED: {(failed or [''])[0].strip()}")
                out[str(n)] = float("nan")
                continue
            out[str(n)] = round(runs / seconds * 3600, 1)
            print(f"   {n} per device: {runs} runs of {epochs} epoch(s) in {seconds:.1f} s: {out[str(n)]:,.0f} runs/hour")
    return out


def _study_file(path: Path, config: dict, epochs: int, seeds: int) -> Path:
    """A study of 2 x `seeds` runs of `config` for `epochs` epochs (its off point and crop 0.5), as TOML."""
    def table(name: str, values: dict) -> str:
        lines = [f"[{name}]"]
        for key, value in values.items():
            if isinstance(value, dict):
                continue
            lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines)

    train = {k: v for k, v in config["train"].items()} | {"epochs": epochs}
    dataset = {k: v for k, v in config["dataset"].items() if k in ("name", "val_fraction", "split_seed")}
    baseline = {name: r["strength"] for name, r in config["regularizers"].items()}
    parts = [table("study", {"name": "device_check", "seeds": seeds}), table("dataset", dataset),
             table("dataset.options", config["dataset"].get("options", {})), table("model", config["model"]),
             table("model.options", config["model"].get("options", {})), table("train", train),
             table("baseline", baseline), "[sweep.crop]\nstrengths = [1.0, 0.5]"]
    path.write_text("\n\n".join(parts) + "\n")
    return path


if __name__ == "__main__":
    main()
