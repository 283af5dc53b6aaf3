"""``run_voc``: the paper's weakly supervised setting on PASCAL VOC 2012.

Each image's pseudo-mask comes from its image-level labels (the classes present in its ground
truth) with the spec's prompt, which ``Segmenter.segment`` builds (class-name expansions,
background words). Scored by mIoU over the 21 classes from a confusion matrix (255 ignored),
without and, with ``crf=True``, also with the dense CRF (both rows in the report). The target with
SD 1.4/1.5 on a GPU is the paper's 76.1 mIoU on VOC 2012 train.

The layout is :mod:`.pascal`'s. The same run folder as ``bench personal`` (:mod:`personaseg.bench.rundir`: JSONL log, resume, sharding).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import to_dict
from ..errors import DatasetError
from ..io import save_png_atomic
from ..prompts import VOC_CLASSES
from ..provenance import provenance
from ..runtime import is_main, process_device, shard, wait
from ..viz import palette_png
from .data import BenchWarning
from .metrics import IGNORE, VOC_NUM_CLASSES, class_iou, confusion, miou_from_confusion
from .pascal import VocSample, read_voc
from .report import jsonable, pct, provenance_line
from .rundir import RunDir, latest, progress_bar, voc_mask_path


@dataclass
class VocConfig:
    """One ``bench voc`` run."""

    split: str = "train"  # ImageSets/Segmentation/<split>.txt (paper: train)
    crf: bool = False  # also score the dense-CRF masks (needs personaseg[crf])
    limit: int | None = None  # only the first N images of the split
    model: str | None = None  # model id or folder (paper: SD 1.4)
    find: dict[str, Any] = field(default_factory=dict)  # FindConfig overrides (default: the VOC preset)
    out: Path = Path("runs/voc")  # RUNDIR: samples.jsonl, report.json, report.md, grid.png
    resume: bool = False  # continue a run in `out`
    save_masks: bool = False  # write RUNDIR/masks/<method>/<id>.png (VOC palette)
    device: str | None = None  # torch device
    dtype: str | None = None  # torch dtype name
    seed: int | None = None  # the segmenter's noise seed (None: FindConfig's)

    def __post_init__(self) -> None:
        self.out = Path(self.out)


def _sparse(conf: np.ndarray) -> list[list[int]]:
    g, p = np.nonzero(conf)
    return [[int(a), int(b), int(conf[a, b])] for a, b in zip(g, p)]


def _dense(entries: list[list[int]]) -> np.ndarray:
    conf = np.zeros((VOC_NUM_CLASSES, VOC_NUM_CLASSES), np.int64)
    for g, p, n in entries:
        conf[g, p] += n
    return conf


def score_image(seg, sample: VocSample, methods: list[str], rundir: Path, save: bool) -> list[dict[str, Any]]:
    """Pseudo-masks of one image (per method: "t2m", "t2m+crf"), one record each.

    Each method segments under ``seg.with_config(crf=...)`` (the attention is cached: only the CRF
    reruns); the segmenter's own config comes back after, even on error."""
    try:
        image, gt = sample.load()
    except DatasetError as err:
        warnings.warn(f"skipped: {err}", BenchWarning, stacklevel=2)
        return [{"method": m, "image": sample.image, "concept": "voc", "error": str(err)} for m in methods]
    classes = [int(c) for c in np.unique(gt) if c not in (0, IGNORE)]
    lut = np.array([0, *classes], np.uint8)  # segment's label i -> VOC class index
    t0 = time.perf_counter()
    seg.set_image(image)
    out = []
    for method in methods:
        with seg.with_config(crf=method.endswith("+crf")):
            if classes:
                pred = lut[seg.segment([VOC_CLASSES[c] for c in classes]).label_map]
            else:  # no object class: everything is background
                pred = np.zeros(gt.shape, np.uint8)
        out.append({"method": method, "image": sample.image, "concept": "voc", "classes": classes,
                    "confusion": _sparse(confusion(pred, gt)), "find_s": time.perf_counter() - t0})
        t0 = time.perf_counter()
        if save:
            save_png_atomic(voc_mask_path(rundir, method, sample.image), palette_png(pred))
    return out


def voc_results(records: list[dict[str, Any]], methods: list[str], ids: list[str]) -> dict[str, Any]:
    """mIoU and per-class IoU per method over the selected images."""
    by_key = latest(records)
    results = {}
    for m in methods:
        recs = [by_key[(m, i, "voc")] for i in ids if (m, i, "voc") in by_key]
        ok = [r for r in recs if "error" not in r]
        conf = sum((_dense(r["confusion"]) for r in ok), np.zeros((VOC_NUM_CLASSES, VOC_NUM_CLASSES), np.int64))
        per = class_iou(conf)
        results[m] = {"mIoU": miou_from_confusion(conf) if ok else None, "n": len(ok),
                      "n_skipped": len(recs) - len(ok),
                      "per_class": {VOC_CLASSES[c]: (None if np.isnan(v) else float(v)) for c, v in enumerate(per)}}
    return results


def run_voc(root: str | Path, config: VocConfig, *, progress: bool = True) -> dict[str, Any]:
    """Pseudo-masks for a VOC split and their mIoU; writes report.json / report.md in ``config.out``."""
    from .. import __version__
    from ..config import find_config
    from ..models import resolve_model_id
    from ..segmenter import Segmenter

    start = time.perf_counter()
    samples = read_voc(root, config.split)[: config.limit or None]
    methods = ["t2m"] + (["t2m+crf"] if config.crf else [])
    run = RunDir.start(config.out, config.resume)
    done = run.done()
    pending = [s for s in samples if any((m, s.image, "voc") not in done for m in methods)]
    overrides = {**config.find, **({"seed": config.seed} if config.seed is not None else {})}
    seg = Segmenter.from_pretrained(config.model, device=config.device or process_device(), dtype=config.dtype,
                                    config=find_config("voc", **overrides))  # each process its own device
    mine = shard(pending)
    bar = progress_bar(progress and is_main())
    t0 = time.perf_counter()
    if bar:
        bar.start()
        task = bar.add_task("pseudo-masks", total=len(mine))
    try:
        for sample in mine:
            todo = [m for m in methods if (m, sample.image, "voc") not in done]
            for rec in score_image(seg, sample, todo, run.path, config.save_masks):
                run.append(rec)
            if bar:
                bar.advance(task)
    finally:
        if bar:
            bar.stop()
    wait()
    find_wall = time.perf_counter() - t0
    if is_main():
        records = run.finish()
        ok = [r for r in latest(records).values() if "error" not in r]
        report = {
            "config": {"voc": jsonable(to_dict(config)), "find": jsonable(to_dict(seg.config))},
            "version": __version__, "model": resolve_model_id(config.model),
            "wall_s": time.perf_counter() - start,
            "provenance": provenance(config.model),
            "dataset": {"root": str(root), "split": config.split, "n_images": len(samples)},
            "results": voc_results(records, methods, [s.image for s in samples]),
            "skipped": sorted({r["image"]: r["error"] for r in records if "error" in r}.items()),
            "timing": {"images_per_s": len(pending) / find_wall if pending and find_wall else None,
                       "s_per_image": (sum(r["find_s"] for r in ok) / len(ok)) if ok else None,
                       "find_wall_s": find_wall},
        }
        run.write_report(report, voc_markdown(report))
    wait()
    return run.report()


def voc_markdown(report: dict[str, Any]) -> str:
    """report.md: mIoU per method, then per-class IoU (x100)."""
    res = report["results"]
    names = list(next(iter(res.values()))["per_class"])
    lines = [f"# VOC pseudo-masks: {report['dataset']['root']} ({report['dataset']['split']})", "",
             f"Model `{report['model']}`, personaseg {report['version']}, {report['dataset']['n_images']} "
             f"images, wall {report['wall_s']:.1f} s. IoU x100; paper (SD 1.4, train): 76.1 mIoU. "
             f"{provenance_line(report)}", "",
             "| method | mIoU | n | skipped |", "|---|---|---|---|"]
    lines += [f"| {m} | {pct(r['mIoU'])} | {r['n']} | {r['n_skipped']} |" for m, r in res.items()]
    lines += ["", "| class | " + " | ".join(res) + " |", "|---" * (len(res) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(pct(res[m]["per_class"][c]) for m in res) + " |" for c in names]
    lines += ["", "## Config", "", "```json", json.dumps(report["config"], indent=2), "```", ""]
    return "\n".join(lines)
