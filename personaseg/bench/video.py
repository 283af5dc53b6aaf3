"""``run_video``: learn every target object, track it through its sequence, score J, F and J&F.

The conventions of ``bench personal``, through the same helpers: concepts learned once and cached
(:mod:`~personaseg.bench.learning`), the run folder (:mod:`~personaseg.bench.rundir`): one JSON line
per finished (mode, method, target) in ``RUNDIR/samples.jsonl`` (``resume`` skips those), a process's
share under ``accelerate launch`` (:func:`~personaseg.runtime.shard`), ``--save-masks`` writing
``RUNDIR/masks/<method>[-per-frame]/<seq>/<obj>/<frame>.png``.

``report.json``::

    {"config": {"bench", "learn", "find", "track"}, "version", "model", "wall_s",
     "provenance": {"version", "git_commit", "git_dirty", "model", "model_fingerprint"},
     "dataset": {"root", "n_targets", "tags", "protocol"},
     "results": {METHOD: {"all" | TAG: {"n", "J", "F", "J&F", "absent_frames", "absent_reported"},
                          "learn_s", "learn_cpu_s"}},  # the first mode; learn cost as in bench personal
     "modes": {MODE: {METHOD: {...as results...}}},        # MODE: "temporal" | "per-frame"
     "per_sequence": {MODE: {METHOD: {"seq/obj": {"J", "F", "J&F"}}}},
     "timing": {MODE: {METHOD: {"frames", "seconds", "frames_per_s", "unet_rows_per_frame"}}},
     "skipped": [{"target", "error"}]}

``absent_reported``: of the frames where the object is out of view, the share reported absent.
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..errors import ConfigError, DatasetError
from ..io import save_png_atomic
from ..runtime import is_main, shard, wait
from . import learning
from .config import BASELINES, METHODS
from .data import BenchWarning
from .davis import VideoData, VideoTarget, open_video_dataset
from .jf import frame_scores, summarize
from .report import jsonable, learn_cost, pct, provenance_line
from .rundir import RunDir, latest, progress_bar, video_mask_dir
from .runner import load_segmenter

MODES = ("temporal", "per-frame")


@dataclass
class VideoBenchConfig:
    """One ``bench video`` run."""

    model: str | None = None  # model id or folder (None: default)
    method: str = "ti"  # how targets are learned: "ti" or "lora"
    baselines: list[str] = field(default_factory=lambda: ["class-word"])  # scored on the same frames
    modes: list[str] = field(default_factory=lambda: ["temporal"])  # "temporal" and/or "per-frame" (results: the first)
    learn: dict[str, Any] = field(default_factory=dict)  # LearnConfig overrides
    find: dict[str, Any] = field(default_factory=dict)  # FindConfig overrides
    track: dict[str, Any] = field(default_factory=dict)  # TrackConfig overrides (temporal mode)
    subsets: list[str] | None = None  # only targets with one of these tags
    limit: int | None = None  # only the first N targets
    max_frames: int | None = None  # only the first N frames of each sequence
    split: str = "val"  # ImageSets/2017/<split>.txt
    resolution: str = "480p"
    out: Path = Path("runs/video")
    resume: bool = False
    save_masks: bool = False
    strict: bool = False  # a bad sequence stops the run
    device: str | None = None
    dtype: str | None = None
    seed: int = 0
    concepts_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}", hint="use ti or lora")
        for name in self.baselines:
            if name not in BASELINES:
                raise ConfigError(f"unknown baseline {name!r}", hint="use " + ", ".join(BASELINES))
        for mode in self.modes:
            if mode not in MODES:
                raise ConfigError(f"unknown mode {mode!r}", hint="use temporal, per-frame or both")
        if not self.modes:
            raise ConfigError("no mode to run", hint="use temporal, per-frame or both")
        for name in ("limit", "max_frames"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 1")
        self.out = Path(self.out)
        self.concepts_dir = Path(self.concepts_dir) if self.concepts_dir else None

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys([self.method, *self.baselines]))


def record_key(r: dict[str, Any]) -> tuple[str, str, str]:
    """(mode, method, target): one scored target of ``bench video`` (its records' key in the run folder)."""
    return r["mode"], r["method"], r["target"]


def track_config(config: VideoBenchConfig, temporal: bool = True):
    """The TrackConfig of a mode: the run's overrides (checked, unknown keys fail) and the mode."""
    from ..config import build_config
    from ..track import TrackConfig

    return build_config(TrackConfig, config.track, {"temporal": temporal}, source="the bench's track settings")


def score_target(seg, target: VideoTarget, mode: str, method: str, phrase: str, config: VideoBenchConfig,
                 rundir: Path) -> dict[str, Any]:
    """Track ``phrase`` through the target's sequence; one record with J, F and per-frame figures."""
    frames = target.frames[:config.max_frames] if config.max_frames else target.frames
    scored = set(target.scored) & set(range(len(frames)))
    tcfg = track_config(config, temporal=mode == "temporal")
    per_frame, rows, start = [], 0, time.perf_counter()
    for r in seg.track(frames, phrase, config=tcfg):
        rows += r.unet_rows
        i = r.index
        if config.save_masks:
            save_png_atomic(video_mask_dir(rundir, mode, method, target.seq, target.obj) / f"{i:05d}.png", r.mask)
        if i not in scored:
            continue
        gt = target.gt(i)
        if gt.shape != r.mask.shape:
            raise DatasetError(f"{target.annotations[i]} is {gt.shape[1]}x{gt.shape[0]} but its frame is "
                               f"{r.mask.shape[1]}x{r.mask.shape[0]}", hint="annotations must match their frames")
        j, f = frame_scores(r.mask, gt)
        per_frame.append({"frame": i, "J": round(j, 6), "F": round(f, 6), "found": r.found,
                          "absent": not gt.any()})
    seconds = time.perf_counter() - start
    absent = [p for p in per_frame if p["absent"]]
    n = max(1, len(per_frame))
    return {"mode": mode, "method": method, "target": target.key, "subset": target.tags, "phrase": phrase,
            "J": sum(p["J"] for p in per_frame) / n, "F": sum(p["F"] for p in per_frame) / n,
            "absent_frames": len(absent), "absent_reported": sum(1 for p in absent if not p["found"]),
            "frames": len(frames), "seconds": seconds, "unet_rows": rows, "per_frame": per_frame}


def run_video(root: str | Path, config: VideoBenchConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the video benchmark in ``root`` (see :mod:`personaseg.bench.davis`); returns the report."""
    from ..models import resolve_model_id

    start = time.perf_counter()
    data = open_video_dataset(root, split=config.split, resolution=config.resolution, subsets=config.subsets)
    if data.errors and config.strict:
        raise DatasetError(data.errors[0][1])
    for seq, message in data.errors:
        warnings.warn(f"skipped {seq}: {message}", BenchWarning, stacklevel=2)
    targets = data.targets[:config.limit] if config.limit else list(data.targets)
    run = RunDir.start(config.out, config.resume, key=record_key)
    methods, modes = config.methods, config.modes
    concepts_dir = config.concepts_dir or learning.default_concepts_dir()
    model_id = resolve_model_id(config.model)
    done = run.done()
    pending = [t for t in targets if any((m, me, t.key) not in done for m in modes for me in methods)]
    jobs = learning.plan(list({t.concept.name: t.concept for t in targets}.values()),
                         [m for m in methods if m in METHODS], config.learn, config.seed, model_id)
    tokens = {(j.concept.name, j.method): j.token for j in jobs}

    bar = progress_bar(progress and is_main())
    with bar or nullcontext():
        needed = {t.concept.name for t in pending}  # learn phase: as bench personal's (learn is data-parallel)
        learning.learn_all([j for j in jobs if j.concept.name in needed], config.model, concepts_dir, run, bar)
        mine = shard(pending)
        seg = load_segmenter(config, concepts_dir) if (mine or is_main()) else None
        if seg is not None:
            learning.refresh_references(seg, [j for j in jobs if j.concept.name in needed], write=is_main())
        task = bar.add_task("track + score", total=len(mine)) if bar else None
        for target in mine:
            for rec in track_target(seg, target, tokens, done, config, run.path):
                run.append(rec)
            if bar:
                bar.advance(task)
        wait()

    if is_main():
        report = build_report(data, targets, config, run.finish(), seg.config, model_id,
                              wall_s=time.perf_counter() - start, learned=run.learned())
        run.write_report(report, markdown(report))
    wait()
    return run.report()


def track_target(seg, target: VideoTarget, tokens: dict, done: set, config: VideoBenchConfig,
                 rundir: Path) -> list[dict[str, Any]]:
    """The target's records for each mode and method not yet done (a bad sequence: an error record
    each, or a DatasetError with ``strict``)."""
    out = []
    for mode in config.modes:
        for method in config.methods:
            if (mode, method, target.key) in done:
                continue
            phrase = tokens[(target.concept.name, method)] if method in METHODS else target.concept.class_word
            try:
                rec = score_target(seg, target, mode, method, phrase, config, rundir)
            except DatasetError as err:
                if config.strict:
                    raise
                warnings.warn(f"skipped {target.key}: {err}", BenchWarning, stacklevel=2)
                rec = {"mode": mode, "method": method, "target": target.key, "subset": target.tags,
                       "error": str(err)}
            out.append(rec)
    return out


def build_report(data: VideoData, targets: list[VideoTarget], config: VideoBenchConfig, records: list[dict],
                 find_config: Any, model_id: str, wall_s: float,
                 learned: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The report dict (module docstring) from the run's records and learn log."""
    from .. import __version__
    from ..provenance import provenance

    by_key = latest(records, key=record_key)
    tags = sorted({t for x in targets for t in x.tags})
    modes: dict[str, Any] = {}
    per_seq: dict[str, Any] = {}
    timing: dict[str, Any] = {}
    skipped = {seq: {"target": seq, "error": msg} for seq, msg in data.errors}
    for mode in config.modes:
        modes[mode], per_seq[mode], timing[mode] = {}, {}, {}
        for method in config.methods:
            recs = [by_key[k] for t in targets if (k := (mode, method, t.key)) in by_key]
            ok = [r for r in recs if "error" not in r]
            modes[mode][method] = {"all": summarize(ok), **{tag: summarize(r for r in ok if tag in r["subset"])
                                                           for tag in tags},
                                   **learn_cost(list(learned), method, {t.concept.name for t in targets})}
            per_seq[mode][method] = {r["target"]: {"J": r["J"], "F": r["F"], "J&F": (r["J"] + r["F"]) / 2}
                                     for r in ok}
            frames, seconds = sum(r["frames"] for r in ok), sum(r["seconds"] for r in ok)
            timing[mode][method] = {"frames": frames, "seconds": seconds,
                                    "frames_per_s": frames / seconds if seconds else None,
                                    "unet_rows_per_frame": sum(r["unet_rows"] for r in ok) / frames if frames else None}
            for r in recs:
                if "error" in r:
                    skipped[r["target"]] = {"target": r["target"], "error": r["error"]}
    protocol = ("first-frame mask (frames 0 and -1 not scored)" if any(t.from_first_frame for t in targets)
                else "photos (every frame scored)")
    return {
        "config": {"bench": jsonable(to_dict(config)), "find": jsonable(to_dict(find_config)),
                   "track": to_dict(track_config(config)), "learn": jsonable(config.learn)},
        "version": __version__, "model": model_id, "wall_s": wall_s, "provenance": provenance(model_id),
        "dataset": {"root": str(data.root), "n_targets": len(targets), "tags": tags, "protocol": protocol},
        "results": modes[config.modes[0]], "modes": modes, "per_sequence": per_seq, "timing": timing,
        "skipped": list(skipped.values()),
    }


def markdown(report: dict[str, Any]) -> str:
    """report.md: J&F per mode (all and each tag), timing, skipped sequences, config."""
    ds = report["dataset"]
    groups = ["all", *ds["tags"]]
    lines = [f"# Video benchmark: {ds['root']}", "",
             f"Model `{report['model']}`, personaseg {report['version']}, {ds['n_targets']} targets, learned from "
             f"{ds['protocol']}; wall {report['wall_s']:.0f} s. Figures x100. {provenance_line(report)}".rstrip(), ""]
    for mode, res in report["modes"].items():
        lines += [f"## J&F ({mode})", "", "| method | " + " | ".join(groups) + " | J | F | absent reported |",
                  "|---" * (len(groups) + 4) + "|"]
        for m, rows in res.items():
            a = rows["all"]
            lines.append(f"| {m} | " + " | ".join(pct(rows[g]["J&F"]) for g in groups)
                         + f" | {pct(a['J'])} | {pct(a['F'])} | {pct(a['absent_reported'])} |")
        lines.append("")
    lines += ["## Timing", "", "| mode | method | frames | frames/s | UNet rows per frame |", "|---|---|---|---|---|"]
    for mode, by in report["timing"].items():
        for m, t in by.items():
            fps = "-" if t["frames_per_s"] is None else f"{t['frames_per_s']:.2f}"
            rows = "-" if t["unet_rows_per_frame"] is None else f"{t['unet_rows_per_frame']:.1f}"
            lines.append(f"| {mode} | {m} | {t['frames']} | {fps} | {rows} |")
    learn = {m: r for m, r in report["results"].items() if r.get("learn_s")}
    if learn:
        lines += ["", "Learning (each concept's whole learn call, cached ones at what they cost): "
                  + ", ".join(f"{m} {r['learn_s']:.0f} s ({r['learn_cpu_s']:.0f} CPU s)" for m, r in learn.items())]
    if report["skipped"]:
        lines += ["", f"## Skipped ({len(report['skipped'])})", ""]
        lines += [f"- {s['target']}: {s['error']}" for s in report["skipped"]]
    lines += ["", "## Config", "", "```json", json.dumps(report["config"], indent=2), "```", ""]
    return "\n".join(lines)


__all__ = ["MODES", "VideoBenchConfig", "build_report", "markdown", "record_key", "run_video", "score_target",
           "track_target"]
