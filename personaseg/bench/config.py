"""``BenchConfig``: the settings of one benchmark run (``personaseg bench personal``).

Learn and find settings are not duplicated here: ``learn`` and ``find`` hold overrides of
``LearnConfig`` and ``FindConfig`` fields (from a recipe and flags), checked by those classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_recipe
from ..errors import ConfigError

METHODS = ("ti", "lora")  # learned concepts (see personaseg.concepts)
MASKED = "+masks"  # a method's row learned with the photos' masks ("ti+masks"), beside its plain row
GUIDES = (MASKED, "+box", "+click")  # rows learned from the photos' masks, their boxes, a click inside each
BASELINES = ("class-word",) + METHODS  # what --baselines accepts besides the method itself
LAYOUTS = ("auto", "mug19", "perseg", "hf")  # dataset layouts, see data/README.md


@dataclass
class BenchConfig:
    """One ``bench personal`` run: dataset, methods, output, and overrides for learn / find."""

    layout: str = "auto"  # dataset layout: auto | mug19 | perseg | hf (data/README.md)
    model: str | None = None  # model id or folder given to learn and the segmenter (None: default)
    method: str = "ti"  # how concepts are learned: "ti" (Textual Inversion) or "lora" (DreamBooth)
    baselines: list[str] = field(default_factory=lambda: ["class-word"])  # scored on the same images
    learn: dict[str, Any] = field(default_factory=dict)  # LearnConfig overrides (recipe < flags)
    find: dict[str, Any] = field(default_factory=dict)  # FindConfig overrides (recipe < flags)
    subsets: list[str] | None = None  # keep only samples carrying one of these tags (None: all)
    limit: int | None = None  # score only the first N samples (in dataset order)
    shots: int | None = None  # the first k photos of each concept learn it (PerSeg: of its images, the rest are tests; None: PerSeg 1, else all)
    photo_masks: bool = False  # learn from the photos' masks too: the method's row becomes METHOD+masks
    photo_boxes: bool = False  # learn from each photo mask's bounding box (the model draws the mask): a METHOD+box row
    photo_clicks: bool = False  # learn from a click inside each photo mask (its most interior pixel): a METHOD+click row
    split: str = "test"  # Hugging Face datasets: the split to read
    out: Path = Path("runs/bench")  # RUNDIR: samples.jsonl, report.json, report.md, grid.png
    resume: bool = False  # continue a run in `out`, skipping samples already scored
    save_masks: bool = False  # write every prediction to RUNDIR/masks/<method>/<stem>/<concept>.png
    strict: bool = False  # a bad sample stops the run instead of being reported and skipped
    device: str | None = None  # torch device (None: cuda, then mps, then cpu)
    dtype: str | None = None  # torch dtype name (None: float16 on cuda, else float32)
    seed: int = 0  # seeds learning (when the recipe does not) and the segmenter's noise draws
    concepts_dir: Path | None = None  # cache of learned concepts (None: the user cache folder)
    grid: bool = True  # draw RUNDIR/grid.png (a sample per concept and subset tag)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown dataset layout {self.layout!r}", hint="use " + ", ".join(LAYOUTS))
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}", hint="use ti or lora")
        for name in self.baselines:
            if name not in BASELINES:
                raise ConfigError(f"unknown baseline {name!r}", hint="use " + ", ".join(BASELINES))
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit {self.limit} must be >= 1")
        if self.shots is not None and self.shots < 1:
            raise ConfigError(f"--shots {self.shots} must be >= 1")
        self.out = Path(self.out)
        self.concepts_dir = Path(self.concepts_dir) if self.concepts_dir else None

    @property
    def methods(self) -> list[str]:
        """The method first (``ti+masks`` with photo masks), then each baseline once (the report's row order)."""
        on = (self.photo_masks, self.photo_boxes, self.photo_clicks)
        first = [self.method + g for g, flag in zip(GUIDES, on) if flag] or [self.method]
        return list(dict.fromkeys([*first, *self.baselines]))


def row_guide(row: str) -> str:
    """How a report row's concepts were shown their object: "+masks", "+box", "+click" or ""."""
    return next((g for g in GUIDES if row.endswith(g)), "")


def learned_method(row: str) -> str | None:
    """The learn method of a report row (``ti`` for ``ti``, ``ti+masks``, ``ti+box``), None for a baseline."""
    base = row[: len(row) - len(row_guide(row))]
    return base if base in METHODS else None


def read_recipe(path: str | Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A bench recipe -> (learn overrides, find overrides).

    Either a plain learn recipe (``LearnConfig`` keys at the top level, as ``personaseg learn
    --recipe`` reads) or one with ``[learn]`` and ``[find]`` tables. Keys are checked later by
    ``LearnConfig`` / ``FindConfig``, so a typo fails loudly naming this file.
    """
    if path is None:
        return {}, {}
    values = load_recipe(path)
    if "learn" in values or "find" in values:
        extra = set(values) - {"learn", "find"}
        if extra:
            raise ConfigError(
                f"recipe {path}: keys {sorted(extra)} outside the [learn] / [find] tables",
                hint="put learn settings under [learn] and find settings under [find]",
            )
        return dict(values.get("learn", {})), dict(values.get("find", {}))
    return dict(values), {}
