"""``run_personal``: learn every concept, find it in every test sample, score, report.

Per-sample records are appended to ``RUNDIR/samples.jsonl`` as they are made (one line each,
flushed and fsynced), so a killed run resumes where it stopped (``resume=True``) and processes
launched by ``accelerate launch`` share the work: each learn runs data-parallel over all processes
(``learn`` synchronises them), then each process finds and scores its share of the samples and writes
``samples.jsonl.part<rank>``; the main process merges the parts and writes the report from the
merged log, exactly as for one process.

    >>> report = run_personal("data/toy-bench", BenchConfig(model="toy", out=Path("runs/toy")))
    >>> report["results"]["ti"]["all"]["mIoU"]
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..errors import DatasetError, InputError
from ..io import append_jsonl, read_jsonl
from ..runtime import home_dir, is_main, merge_parts, part_path, process_device, shard, wait
from . import learning
from .config import BenchConfig, learned_method
from .datasets import BenchData, Sample, open_dataset
from .metrics import sample_metrics

SAMPLES = "samples.jsonl"  # per (method, sample) records; other tools read this name
LEARNED = "learn.jsonl"  # per (concept, method) learn records: token, seconds, cache hit


def record_key(r: dict[str, Any]) -> tuple[str, str, str]:
    """(method, image, concept): one scored sample. Resume skips keys with a result; a key whose
    record is an error (a bad sample) is tried again, so a fixed dataset resumes cleanly."""
    return r["method"], r["image"], r["concept"]


def _merge_key(r: dict[str, Any]) -> tuple:
    return (*record_key(r), "error" in r)


def default_concepts_dir() -> Path:
    """Where benchmark concepts are cached across runs: ``$PERSONASEG_HOME/bench-concepts``, else
    the user cache folder (kept apart from the user's own concept store)."""
    return home_dir("bench-concepts")


def mask_path(rundir: Path, method: str, sample: Sample, grid: bool = False) -> Path:
    """``RUNDIR/masks/<method>/<image-stem>/<concept>.png`` (``grid-masks/`` for grid-only copies)."""
    return rundir / ("grid-masks" if grid else "masks") / method / sample.stem / f"{sample.concept}.png"


def start_rundir(rundir: Path, resume: bool) -> Path:
    """Check RUNDIR (main process): refuse to mix runs without --resume; fold leftover parts."""
    if is_main():
        existing = (rundir / SAMPLES).exists() or any(rundir.glob(SAMPLES + ".part*"))
        if existing and not resume:
            raise InputError(f"{rundir} already holds a run ({SAMPLES})",
                             hint="pass --resume to continue it, or choose another --out")
        rundir.mkdir(parents=True, exist_ok=True)
        merge_parts(rundir / SAMPLES, _merge_key)  # a killed multi-process run
    wait()
    return rundir


def select(data: BenchData, limit: int | None) -> list[Sample]:
    """The samples to score: dataset order, the first ``limit``."""
    return data.samples[:limit] if limit else list(data.samples)


def run_personal(root: str | Path, config: BenchConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the personal-segmentation benchmark in ``root``; returns the report (see report.py)."""
    from ..models import resolve_model_id
    from . import report as reporting

    start = time.perf_counter()
    data = open_dataset(root, config.layout, shots=config.shots, split=config.split, subsets=config.subsets)
    samples = select(data, config.limit)
    rundir = start_rundir(config.out, config.resume)
    methods = config.methods
    concepts_dir = config.concepts_dir or default_concepts_dir()
    model_id = resolve_model_id(config.model)
    done = {record_key(r) for r in read_jsonl(rundir / SAMPLES) if "error" not in r}
    pending = [s for s in samples if any((m, s.image, s.concept) not in done for m in methods)]
    used = list(dict.fromkeys(s.concept for s in samples))
    jobs = learning.plan([data.concepts[c] for c in used], [m for m in methods if learned_method(m)],
                         config.learn, config.seed, model_id)
    grid_keys = reporting.grid_samples(samples) if config.grid else set()
    run_id = time.strftime("%Y%m%dT%H%M%S")

    bar = progress_bar(progress and is_main())
    with bar or nullcontext():
        # 1. learn: every process takes part in each learn (learn is data-parallel itself)
        t_learn = time.perf_counter()
        needed = {s.concept for s in pending}  # a resumed run learns nothing for finished concepts
        todo = [j for j in jobs if j.concept.name in needed]
        hits = [learning.cached(j.token, concepts_dir) for j in todo]  # decided before anyone writes
        wait()
        task = bar.add_task("learn concepts", total=len(todo)) if bar else None
        for job, hit in zip(todo, hits):
            rec = learning.run_job(job, config.model, concepts_dir, rundir / "photos", hit)
            if is_main():
                append_jsonl(rundir / LEARNED, {**rec, "run": run_id})
            if bar:
                bar.advance(task)
        wait()
        learn_wall = time.perf_counter() - t_learn
        tokens = {(j.concept.name, j.row): j.token for j in jobs}

        # 2. find and score (each process its share of the samples)
        t_load = time.perf_counter()
        mine = shard(pending)
        seg = _segmenter(config, concepts_dir) if (mine or is_main()) else None
        wait()
        t_find = time.perf_counter()  # images/s counts from here: model loading is load_wall_s
        task = bar.add_task("find + score", total=len(mine)) if bar else None
        for sample in mine:
            todo = [m for m in methods if (m, sample.image, sample.concept) not in done]
            for rec in score_sample(seg, sample, todo, data, tokens, config, rundir, grid_keys):
                append_jsonl(part_path(rundir / SAMPLES), rec)
            if bar:
                bar.advance(task)
        wait()
        find_wall = time.perf_counter() - t_find

    if is_main():
        merge_parts(rundir / SAMPLES, _merge_key)
        run_info = {"learn_wall_s": learn_wall, "load_wall_s": t_find - t_load, "find_wall_s": find_wall,
                    "images": len(pending),
                    "wall_s": time.perf_counter() - start}
        report = reporting.build_report(
            data, samples, methods, read_jsonl(rundir / SAMPLES), read_jsonl(rundir / LEARNED),
            config=config, find_config=seg.config, model_id=model_id, run=run_info,
            learn_configs={j.row: j.config for j in jobs},
        )
        reporting.write_report(rundir, report, data, samples, methods, grid=config.grid)
    wait()
    return json.loads((rundir / "report.json").read_text())


def score_sample(seg, sample: Sample, methods: list[str], data: BenchData, tokens: dict, config: BenchConfig,
                 rundir: Path, grid_keys: set) -> list[dict[str, Any]]:
    """Find the sample's concept with each method; one record per method (or per error)."""
    base = {"image": sample.image, "concept": sample.concept, "subset": sample.subset}
    try:
        image, gt = sample.load()
    except DatasetError as err:
        if config.strict:
            raise
        warn(f"skipped: {err}")
        return [{"method": m, **base, "error": str(err)} for m in methods]
    t0 = time.perf_counter()
    seg.set_image(image)
    encode_s = time.perf_counter() - t0
    out = []
    for i, method in enumerate(methods):
        phrase = tokens[(sample.concept, method)] if learned_method(method) else data.concepts[sample.concept].class_word
        t0 = time.perf_counter()
        r = seg.find(phrase)
        find_s = time.perf_counter() - t0 + (encode_s if i == 0 else 0.0)
        rec = {"method": method, **base, "phrase": phrase, **sample_metrics(r.mask, gt, r.scores),
               "presence": r.presence, "relative_presence": r.relative_presence,
               "found": bool(r.found), "find_s": find_s}
        if config.save_masks or sample.key in grid_keys:
            from ..io import save_png_atomic

            save_png_atomic(mask_path(rundir, method, sample, grid=not config.save_masks), r.mask)
        out.append(rec)
    return out


def _segmenter(config: BenchConfig, concepts_dir: Path):
    from ..config import find_config
    from ..segmenter import Segmenter

    overrides = dict(config.find)
    if config.seed is not None:
        overrides["seed"] = config.seed
    cfg = find_config(**overrides)
    return Segmenter.from_pretrained(config.model, device=config.device or process_device(), dtype=config.dtype,
                                     config=cfg, concepts_dir=concepts_dir)


def progress_bar(enabled: bool):
    """A rich progress bar on stderr, or None when disabled (other processes, tests)."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True))


def warn(message: str) -> None:
    """One yellow line on stderr."""
    from rich.console import Console
    from rich.text import Text

    # as text, not markup: a sample's path or an error's hint may hold brackets ("personaseg[datasets]")
    Console(stderr=True).print(Text.assemble(("warning:", "yellow"), f" {message}"), highlight=False, soft_wrap=True)


__all__ = ["LEARNED", "SAMPLES", "default_concepts_dir", "mask_path", "record_key", "run_personal",
           "score_sample", "start_rundir"]
