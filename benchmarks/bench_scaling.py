"""Does `bench personal` scale over processes? 1 process vs 2 (accelerate), same metrics?

    python benchmarks/bench_scaling.py --json benchmarks/bench_scaling.json
    python benchmarks/bench_scaling.py --model toy --concepts 2 --scenes 6 --steps 100 --draws 2

On a freshly generated toy benchmark (``personaseg.toyworld.make_bench``, a seed), the same
`personaseg bench personal` command runs as:

- **one**: ``python -m personaseg bench personal ...`` (one process, torch's default threads);
- **two**: ``accelerate launch --multi_gpu --num_processes 2 -m personaseg bench personal ...``
  (two processes with one thread each, joined over gloo on the CPU: on a machine without GPUs
  ``accelerate launch --cpu`` starts one process unless MPI is set up).

Each in two phases: **cold** (fresh concept caches: learn + find; under two processes each learn
is data-parallel, so the learned concepts may differ slightly from one process's) and **warm**
(both reuse the concepts the one-process cold run learned: find and score only, so the figures
must agree; they can differ only by float summation order, since one process uses 2 threads and
the two use 1 each; a third warm run, one process with OMP_NUM_THREADS=1, must match the two
exactly). Speed-up = wall(one) / wall(two) per phase, whole commands (start-up and model
loading included) and the report's find phase. Writes JSON with the config, the commands, every
wall time and the figures of both reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from personaseg.provenance import provenance

KEYS = ("mIoU", "cIoU", "P@0.5", "bIoU", "pointing", "fp_rate")


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Run a command, fail loudly with its stderr tail; returns the wall time."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return wall


def figures(report: dict) -> dict:
    """method -> group -> the main figures."""
    return {m: {g: {k: row.get(k) for k in KEYS} for g, row in groups.items()}
            for m, groups in report["results"].items()}


def max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two figures dicts (inf when their shapes differ)."""
    worst = 0.0
    for m in a:
        for g in a[m]:
            for k in KEYS:
                x, y = a[m][g][k], b.get(m, {}).get(g, {}).get(k)
                if (x is None) != (y is None):
                    return float("inf")
                if x is not None:
                    worst = max(worst, abs(x - y))
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="toy", help="model for learn and find (default: the shipped toy model)")
    p.add_argument("--data", type=Path, help="an existing benchmark folder instead of a generated toy one")
    p.add_argument("--seed", type=int, default=11, help="toy benchmark seed")
    p.add_argument("--concepts", type=int, default=2, help="toy benchmark concepts")
    p.add_argument("--scenes", type=int, default=6, help="toy benchmark test scenes per concept")
    p.add_argument("--recipe", type=Path, default=Path(__file__).parents[1] / "recipes" / "ti-cpu.toml")
    p.add_argument("--steps", type=int, default=100, help="learn steps (a scaling check, not an accuracy run)")
    p.add_argument("--draws", type=int, default=None, help="find noise draws (default: the model's / paper's)")
    p.add_argument("--baselines", default="class-word")
    p.add_argument("--json", type=Path, default=Path("benchmarks/bench_scaling.json"))
    p.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed)")
    args = p.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from personaseg.toyworld import make_bench

        data = work / "toybench"
        if not data.exists():
            make_bench(data, seed=args.seed, concepts=args.concepts, scenes=args.scenes)
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    base = ["bench", "personal", str(data), "--model", args.model, "--recipe", str(args.recipe),
            "--steps", str(args.steps), "--baselines", args.baselines, "--no-grid"]
    if args.draws:
        base += ["--draws", str(args.draws)]
    one = [sys.executable, "-m", "personaseg"]
    two = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "personaseg"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    plan = [("cold", "one", one, "c-one", None), ("cold", "two", two, "c-two", None),
            ("warm", "one", one, "c-one", None), ("warm", "two", two, "c-one", None),
            ("warm", "one-1thread", one, "c-one", "1")]
    runs, commands = {}, {}
    for phase, who, prefix, cache, threads in plan:
        out = work / f"{phase}-{who}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = prefix + base + ["--out", str(out), "--concepts-dir", str(work / cache)]
        commands[f"{phase}-{who}"] = ("OMP_NUM_THREADS=1 " if threads else "") + " ".join(cmd)
        print(f"{phase}/{who}: {commands[f'{phase}-{who}']}", flush=True)
        wall = run(cmd, {**env, "OMP_NUM_THREADS": threads} if threads else env)
        report = json.loads((out / "report.json").read_text())
        runs[f"{phase}-{who}"] = {"wall_s": wall, "timing": report["timing"], "figures": figures(report)}
        print(f"  {wall:.1f} s, find phase {report['timing']['find_wall_s']:.1f} s", flush=True)

    result = {
        "benchmark": "bench_scaling",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": str(data),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "commands": commands,
        "runs": runs,
        "provenance": provenance(args.model),
    }
    for phase in ("cold", "warm"):
        a, b = runs[f"{phase}-one"], runs[f"{phase}-two"]
        result[phase] = {
            "speedup_wall": a["wall_s"] / b["wall_s"],
            "speedup_find_phase": a["timing"]["find_wall_s"] / b["timing"]["find_wall_s"],
            "max_abs_figure_diff": max_diff(a["figures"], b["figures"]),
        }
        print(f"{phase}: speed-up {result[phase]['speedup_wall']:.2f}x (find phase "
              f"{result[phase]['speedup_find_phase']:.2f}x), largest figure difference "
              f"{result[phase]['max_abs_figure_diff']:.2e}")
    exact = max_diff(runs["warm-one-1thread"]["figures"], runs["warm-two"]["figures"])
    result["warm"]["max_abs_figure_diff_same_threads"] = exact
    print(f"warm, one process with 1 thread vs two processes: largest figure difference {exact:.2e} "
          "(0 = the sharded run reproduces the single run exactly)")
    from personaseg.io import atomic_write

    with atomic_write(args.json) as fh:
        fh.write((json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {args.json}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
