"""Reports of ``bench personal``: ``report.json`` (figures + full config), ``report.md`` (tables like
the paper's), ``grid.png`` (image | ground truth | each method's prediction, drawn by
:func:`personaseg.viz.truth_grid`). The pieces every bench report uses (:func:`jsonable`,
:func:`pct`, :func:`provenance_line`) are here too; ``bench voc`` and ``bench video`` write theirs
with them.

``report.json``::

    {"config": {"bench": {...}, "learn": {METHOD: {...}}, "find": {...}},
     "version": "...", "model": "...", "wall_s": ...,
     "provenance": {"version", "git_commit", "git_dirty", "model", "model_fingerprint"},
     "dataset": {"root", "layout", "n_samples", "n_concepts", "tags"},
     "results": {METHOD: {"all": ROW, TAG: ROW, ..., "learn_s": ..., "learn_cpu_s": ...}},  # ROW: see metrics.summarize
     "per_concept": {METHOD: {CONCEPT: ROW}},
     "absent": {METHOD: {"fp_rate": ..., "n": ..., "n_without_reference": ...}},  # the last: ti/lora only
     "skipped": [{"image", "concept", "error"}],
     "concepts": {CONCEPT: {"class_word", "photos", "tokens": {METHOD: TOKEN}}},
     "timing": {"images_per_s", "s_per_image", "learn_s", "find_s", "learn_share", "find_share", ...}}

IoU-type figures are fractions in [0, 1] (report.md shows them x100, as papers do). Each ROW also
holds ``n_skipped`` (bad samples of that group, not in its figures but never dropped silently).
``results[METHOD]["learn_s"]``: what learning the method's concepts cost, the sum of each concept's
``learn_seconds`` (its whole ``learn`` call: loading, training, presence; stored in concept.json, so
a concept taken from the cache counts what it cost when it was learned; 0 for a baseline and for
concepts learned before it was stored). A ``METHOD+masks`` row (``--photo-masks``) learned from the
photos' masks. ``learn_cpu_s``: the same in CPU seconds of the learning process (steadier than
the wall on a shared machine).
``n_without_reference``: a learned concept's finds (present or absent) that had no relative presence,
so ``min_relative_presence`` could not say "not found" (see :func:`reference_note`).

Timing: ``images_per_s`` = images scored in this run / wall time of the find phase (all processes
together, model loading excluded: ``load_wall_s``); ``s_per_image`` = compute seconds per image in
one process (encode + every method's find); ``learn_s`` / ``find_s`` = seconds spent learning and
finding over every run of RUNDIR (a cached concept costs 0), and their shares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import to_dict
from ..io import save_png_atomic
from .config import learned_method
from .data import BenchData, Sample
from .metrics import THRESHOLDS, summarize
from .rundir import RunDir, latest, mask_path

GRID_ROWS = 24  # at most this many samples in grid.png
OBJIOU_NOTE = ("mIoU: the mean of per-sample IoUs (the T2M paper's). objIoU: each object's IoU pooled over its "
               "samples, averaged over objects: the figure PerSeg papers call mIoU (PerSeg's evaluation code).")
COLUMNS = ["mIoU", "cIoU", "objIoU"] + [f"P@{k}" for k in THRESHOLDS] + ["bIoU", "pointing"]


def jsonable(value: Any) -> Any:
    """``value`` with its paths as text and tuples as lists (a config for report.json)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def row(records: list[dict[str, Any]]) -> dict[str, Any]:
    """summarize() over the scored records, plus the count of skipped (bad) samples."""
    ok = [r for r in records if "error" not in r]
    return {**summarize(ok), "n_skipped": len(records) - len(ok)}


def reference_note(report: dict[str, Any]) -> str | None:
    """One sentence when some concept finds had no relative presence (no reference, or find settings
    other than the reference's): the presence rule did not apply to them, which raises the FP rate."""
    parts = [f"{a['n_without_reference']} {m}" for m, a in report["absent"].items() if a.get("n_without_reference")]
    if not parts:
        return None
    return (f"No relative presence for {', '.join(parts)} sample(s) (the concept has no presence reference, or "
            "find ran with other settings than it was measured with): the presence rule was not applied to them.")


def results_table(samples: list[Sample], methods: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """``results``, ``per_concept``, ``absent`` and ``skipped`` of the report, from the records."""
    by_key = latest(records)
    results, per_concept, absent, skipped = {}, {}, {}, {}
    tags = sorted({t for s in samples for t in s.subset})
    for m in methods:
        recs = [by_key[(m, s.image, s.concept)] for s in samples if (m, s.image, s.concept) in by_key]
        results[m] = {"all": row(recs)}
        for tag in tags:
            results[m][tag] = row([r for r in recs if tag in r["subset"]])
        concepts = dict.fromkeys(s.concept for s in samples)
        per_concept[m] = {c: row([r for r in recs if r["concept"] == c]) for c in concepts}
        absent[m] = {"fp_rate": results[m]["all"]["fp_rate"], "n": results[m]["all"]["n_absent"]}
        if learned_method(m):  # a learned concept: how many finds could not apply the presence rule
            absent[m]["n_without_reference"] = sum(
                1 for r in recs if "error" not in r and r.get("relative_presence") is None)
        for r in recs:
            if "error" in r:
                skipped[(r["image"], r["concept"])] = {"image": r["image"], "concept": r["concept"], "error": r["error"]}
    return {"results": results, "per_concept": per_concept, "absent": absent, "skipped": list(skipped.values())}


def timing(records: list[dict[str, Any]], learned: list[dict[str, Any]], run: dict[str, Any], processes: int) -> dict[str, Any]:
    """Throughput and where the time went (learn vs find), summed over every run of RUNDIR."""
    ok = [r for r in latest(records).values() if "error" not in r]
    find_s = sum(r.get("find_s", 0.0) for r in ok)
    learn_s = sum(r.get("learn_s", 0.0) for r in learned)
    images = len({(r["image"], r["concept"]) for r in ok})
    total = learn_s + find_s
    return {
        "images_per_s": run["images"] / run["find_wall_s"] if run.get("images") and run.get("find_wall_s") else None,
        "s_per_image": find_s / images if images else None,
        "learn_s": learn_s,
        "find_s": find_s,
        "learn_share": learn_s / total if total else None,
        "find_share": find_s / total if total else None,
        "learn_wall_s": run.get("learn_wall_s"),
        "load_wall_s": run.get("load_wall_s"),
        "find_wall_s": run.get("find_wall_s"),
        "images_this_run": run.get("images"),
        "processes": processes,
    }


def build_report(data: BenchData, samples: list[Sample], methods: list[str], records: list[dict[str, Any]],
                 learned: list[dict[str, Any]], *, config: Any, find_config: Any, model_id: str,
                 run: dict[str, Any], learn_configs: dict[str, Any]) -> dict[str, Any]:
    """The report dict (module docstring) from the per-sample and per-concept logs."""
    from .. import __version__
    from ..concepts.config import card_defaults
    from ..models import read_card
    from ..provenance import provenance
    from ..runtime import num_processes

    card = read_card(model_id)
    learn_cfg = {}
    for m, cfg in learn_configs.items():
        d = to_dict(card_defaults(cfg, card).resolved())  # what learn ran: the model card fills what is unset
        d["class_word"] = "(per concept)"
        learn_cfg[m] = d
    tokens: dict[str, dict[str, str]] = {}
    for r in learned:
        tokens.setdefault(r["concept"], {})[r["method"]] = r["token"]
    used = dict.fromkeys(s.concept for s in samples)
    report = {
        "config": {"bench": jsonable(to_dict(config)), "learn": jsonable(learn_cfg),
                   "find": jsonable(to_dict(find_config))},
        "version": __version__,
        "model": model_id,
        "wall_s": run.get("wall_s"),
        "provenance": provenance(model_id),
        "dataset": {"root": data.root, "layout": data.layout, "n_samples": len(samples),
                    "n_concepts": len(used), "tags": sorted({t for s in samples for t in s.subset})},
        **results_table(samples, methods, records),
        "concepts": {c: {"class_word": data.concepts[c].class_word, "photos": len(data.concepts[c].photos),
                         "tokens": tokens.get(c, {})} for c in used},
        "timing": timing(records, learned, run, num_processes()),
    }
    for m, r in report["results"].items():  # what each method's accuracy cost, cached or not
        r.update(learn_cost(learned, m, used))
    return report


def learn_cost(learned: list[dict[str, Any]], method: str, concepts) -> dict[str, float]:
    """``learn_s`` / ``learn_cpu_s``: what learning ``method``'s ``concepts`` cost, from the run's
    learn log (each concept's whole ``learn`` call, also when taken from the cache; 0 for a baseline)."""
    out = {}
    for key, field in (("learn_s", "concept_learn_s"), ("learn_cpu_s", "concept_learn_cpu_s")):
        per_concept = {x["concept"]: x.get(field) or 0.0 for x in learned if x["method"] == method}
        out[key] = float(sum(per_concept[c] for c in concepts if c in per_concept))
    return out


# --------------------------------------------------------------------------- writing


def pct(v: float | None) -> str:
    """A fraction as a percentage with one decimal, "-" for None (tables show figures x100)."""
    return "-" if v is None else f"{100 * v:.1f}"


def provenance_line(report: dict[str, Any]) -> str:
    """'Code COMMIT, model fingerprint FP.' for a report's headline (reports before provenance: '')."""
    p = report.get("provenance")
    if not p:
        return ""
    commit = (p["git_commit"] or "unknown")[:12] + (" (uncommitted changes)" if p["git_dirty"] else "")
    return f"Code {commit}, model fingerprint {p['model_fingerprint'][:16]}."


def markdown(report: dict[str, Any]) -> str:
    """report.md: mIoU by subset, all metrics, absent false positives, per concept, timing, config."""
    res = report["results"]
    methods = list(res)
    groups = ["all"] + [t for t in report["dataset"]["tags"] if any(res[m][t]["n"] for m in methods)]
    ds = report["dataset"]
    lines = [f"# Benchmark report: {ds['root']}", "",
             f"Model `{report['model']}`, personaseg {report['version']}, {ds['n_samples']} samples, "
             f"{ds['n_concepts']} concepts ({ds['layout']} layout), wall {report['wall_s'] or 0:.1f} s. "
             f"IoU-type figures x100. {provenance_line(report)}", "", "## mIoU by subset, and objIoU", "",
             "| method | " + " | ".join(f"mIoU {g} (n={res[methods[0]][g]['n']})" for g in groups) + " | objIoU all |",
             "|---" * (len(groups) + 2) + "|"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(pct(res[m][g]["mIoU"]) for g in groups)
                     + f" | {pct(res[m]['all']['objIoU'])} |")
    lines += ["", OBJIOU_NOTE]
    lines += ["", "Learning cost (each concept's whole learn call, cached or not): "
              + ", ".join(f"{m} {res[m].get('learn_s', 0.0):.1f} s" for m in methods if learned_method(m)) + "."]
    lines += ["", "## All metrics (samples with the concept present)", "",
              "| method | " + " | ".join(COLUMNS) + " | n | skipped |", "|---" * (len(COLUMNS) + 3) + "|"]
    for m in methods:
        a = res[m]["all"]
        lines.append(f"| {m} | " + " | ".join(pct(a[c]) for c in COLUMNS) + f" | {a['n']} | {a['n_skipped']} |")
    if any(report["absent"][m]["n"] for m in methods):
        lines += ["", "## Concept absent: false-positive rate (lower is better)", "",
                  "| method | FP rate (%) | n |", "|---|---|---|"]
        for m in methods:
            lines.append(f"| {m} | {pct(report['absent'][m]['fp_rate'])} | {report['absent'][m]['n']} |")
        lines += ["", note] if (note := reference_note(report)) else []
    concepts = list(report["per_concept"][methods[0]])
    lines += ["", "## mIoU per concept", "", "| concept | " + " | ".join(methods) + " |",
              "|---" * (len(methods) + 1) + "|"]
    for c in concepts:
        lines.append(f"| {c} | " + " | ".join(pct(report["per_concept"][m][c]["mIoU"]) for m in methods) + " |")
    if report["skipped"]:
        lines += ["", f"## Skipped samples ({len(report['skipped'])})", ""]
        lines += [f"- {s['image']} / {s['concept']}: {s['error']}" for s in report["skipped"]]
    t = report["timing"]
    lines += ["", "## Timing", "", "```json", json.dumps(t, indent=2), "```",
              "", "## Config", "", "```json", json.dumps(report["config"], indent=2), "```", ""]
    return "\n".join(lines)


def grid_samples(samples: list[Sample], limit: int = GRID_ROWS) -> set[tuple[str, str]]:
    """A sample per concept and subset tag (the first of each), at most ``limit``."""
    picked: dict[tuple[str, str], tuple[str, str]] = {}
    for s in samples:
        for tag in s.subset or [""]:
            picked.setdefault((s.concept, tag), s.key)
    return set(list(dict.fromkeys(picked.values()))[:limit])


def draw_grid(rundir: Path, samples: list[Sample], methods: list[str], tile: int = 160):
    """grid.png's picture: a row per grid sample (:func:`grid_samples`) with the masks the run saved."""
    from ..viz import truth_grid

    keys = grid_samples(samples)
    rows, captions = [], []
    for s in samples:
        if s.key not in keys:
            continue
        try:
            image, gt = s.load()
        except Exception:  # a bad sample: reported in report.json already
            continue
        rows.append((image, gt, [_saved_mask(rundir, m, s, gt.shape) for m in methods]))
        captions.append([f"{s.concept}: {','.join(s.subset)}"])  # under the image, never over it
    return truth_grid(rows, methods, tile=tile, captions=captions)


def _saved_mask(rundir: Path, method: str, sample: Sample, shape: tuple[int, ...]) -> np.ndarray | None:
    """The mask ``method`` predicted for ``sample`` (saved with --save-masks, or for the grid only);
    None when there is none or it has another size than the ground truth."""
    from PIL import Image

    path = next((p for p in (mask_path(rundir, method, sample), mask_path(rundir, method, sample, grid=True))
                 if p.exists()), None)
    if path is None:
        return None
    with Image.open(path) as im:
        pred = np.asarray(im.convert("L")) > 0
    return pred if pred.shape == shape else None


def write_report(run: RunDir, report: dict[str, Any], samples: list[Sample], methods: list[str],
                 grid: bool = True) -> None:
    """Write report.json, report.md and (with ``grid``) grid.png into the run folder, each atomically."""
    run.write_report(report, markdown(report))
    if grid:
        img = draw_grid(run.path, samples, methods)
        if img is not None:
            save_png_atomic(run.path / "grid.png", img)
