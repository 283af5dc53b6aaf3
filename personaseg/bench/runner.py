"""``run_personal``: learn every concept, find it in every test sample, score, report.

Per-sample records are appended to ``RUNDIR/samples.jsonl`` as they are made (the run folder:
:mod:`.rundir`), so a killed run resumes where it stopped (``resume=True``) and processes launched
by ``accelerate launch`` share the work: each learn runs data-parallel over all processes
(``learn`` synchronises them), then each process finds and scores its share of the samples and writes
``samples.jsonl.part<rank>``; the main process merges the parts and writes the report from the
merged log, exactly as for one process.

    >>> report = run_personal("data/toy-bench", BenchConfig(model="toy", out=Path("runs/toy")))
    >>> report["results"]["ti"]["all"]["mIoU"]
"""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..io import save_png_atomic
from ..runtime import is_main, process_device, shard, wait
from . import learning
from . import report as reporting
from .config import BenchConfig, learned_method
from .data import BenchData, BenchWarning, Sample
from .datasets import open_dataset
from .metrics import sample_metrics
from .rundir import RunDir, mask_path, progress_bar


def select(data: BenchData, limit: int | None) -> list[Sample]:
    """The samples to score: dataset order, the first ``limit``."""
    return data.samples[:limit] if limit else list(data.samples)


def run_personal(root: str | Path, config: BenchConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the personal-segmentation benchmark in ``root``; returns the report (see report.py)."""
    from ..models import resolve_model_id

    start = time.perf_counter()
    data = open_dataset(root, config.layout, shots=config.shots, split=config.split, subsets=config.subsets)
    samples = select(data, config.limit)
    run = RunDir.start(config.out, config.resume)
    methods = config.methods
    concepts_dir = config.concepts_dir or learning.default_concepts_dir()
    model_id = resolve_model_id(config.model)
    done = run.done()
    pending = [s for s in samples if any((m, s.image, s.concept) not in done for m in methods)]
    used = list(dict.fromkeys(s.concept for s in samples))
    jobs = learning.plan([data.concepts[c] for c in used], [m for m in methods if learned_method(m)],
                         config.learn, config.seed, model_id)
    grid_keys = reporting.grid_samples(samples) if config.grid else set()

    bar = progress_bar(progress and is_main())
    with bar or nullcontext():
        # 1. learn: every process takes part in each learn (learn is data-parallel itself)
        t_learn = time.perf_counter()
        needed = {s.concept for s in pending}  # a resumed run learns nothing for finished concepts
        learning.learn_all([j for j in jobs if j.concept.name in needed], config.model, concepts_dir, run, bar)
        learn_wall = time.perf_counter() - t_learn
        tokens = {(j.concept.name, j.row): j.token for j in jobs}

        # 2. find and score (each process its share of the samples)
        t_load = time.perf_counter()
        mine = shard(pending)
        seg = load_segmenter(config, concepts_dir) if (mine or is_main()) else None
        if seg is not None:
            learning.refresh_references(seg, [j for j in jobs if j.concept.name in needed], write=is_main())
        wait()
        t_find = time.perf_counter()  # images/s counts from here: model loading is load_wall_s
        task = bar.add_task("find + score", total=len(mine)) if bar else None
        for sample in mine:
            todo = [m for m in methods if (m, sample.image, sample.concept) not in done]
            for rec in score_sample(seg, sample, todo, data, tokens, config, run.path, grid_keys):
                run.append(rec)
            if bar:
                bar.advance(task)
        wait()
        find_wall = time.perf_counter() - t_find

    if is_main():
        records = run.finish()
        run_info = {"learn_wall_s": learn_wall, "load_wall_s": t_find - t_load, "find_wall_s": find_wall,
                    "images": len(pending),
                    "wall_s": time.perf_counter() - start}
        report = reporting.build_report(
            data, samples, methods, records, run.learned(),
            config=config, find_config=seg.config, model_id=model_id, run=run_info,
            learn_configs={j.row: j.config for j in jobs},
        )
        reporting.write_report(run, report, samples, methods, grid=config.grid)
    wait()
    return run.report()


def score_sample(seg, sample: Sample, methods: list[str], data: BenchData, tokens: dict, config: BenchConfig,
                 rundir: Path, grid_keys: set) -> list[dict[str, Any]]:
    """Find the sample's concept with each method; one record per method (or per error)."""
    base = {"image": sample.image, "concept": sample.concept, "subset": sample.subset}
    try:
        image, gt = sample.load()
    except DatasetError as err:
        if config.strict:
            raise
        warnings.warn(f"skipped: {err}", BenchWarning, stacklevel=2)
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
            save_png_atomic(mask_path(rundir, method, sample, grid=not config.save_masks), r.mask)
        out.append(rec)
    return out


def load_segmenter(config: Any, concepts_dir: Path):
    """The Segmenter a run finds with (``bench personal``, ``bench video``): FindConfig's defaults
    under the run's find overrides and seed, on this process's device."""
    from ..config import find_config
    from ..segmenter import Segmenter

    overrides = dict(config.find)
    if config.seed is not None:
        overrides["seed"] = config.seed
    cfg = find_config(**overrides)
    return Segmenter.from_pretrained(config.model, device=config.device or process_device(), dtype=config.dtype,
                                     config=cfg, concepts_dir=concepts_dir)


__all__ = ["load_segmenter", "run_personal", "score_sample", "select"]
