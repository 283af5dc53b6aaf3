"""What the web app does, as plain Python: the CLI's library calls, with the app's limits.

Nothing here knows Gradio. Find is ``Segmenter.find`` (+ ``explain`` for the per-token heat map)
with find's own defaults and outputs (``<stem>.mask.png``, ``<stem>.overlay.png`` and the record of
``find --json``); learn is ``personaseg.learn`` with the model card's defaults, told each step;
the concepts are the ``ConceptStore``'s. Errors are the library's own (:class:`PersonasegError`),
which the page shows as one line.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ConceptError, InputError, PersonasegWarning

MAX_PHOTOS = 20  # photos per learn (3-10 is what works; more only costs time)
MAX_UPLOAD = "25mb"  # per uploaded file; the images themselves are also held to load_image's pixel guard

_local = threading.local()  # per request thread: where our warnings go


def _show_warning(message, category, filename, lineno, file=None, line=None, _original=warnings.showwarning):
    sink = getattr(_local, "sink", None)
    if sink is not None and issubclass(category, PersonasegWarning):
        sink.append(str(message))
    else:
        _original(message, category, filename, lineno, file, line)


@contextmanager
def collecting_warnings() -> Iterator[list[str]]:
    """Collect personaseg's warnings raised in this thread (one photo, a skipped file, ...) for the page."""
    if warnings.showwarning is not _show_warning:
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", PersonasegWarning)
    _local.sink = sink = []
    try:
        yield sink
    finally:
        _local.sink = None


@dataclass
class FindOutput:
    mask: Path  # <stem>.mask.png, 0/255, as `personaseg find` writes it
    overlay: Path  # <stem>.overlay.png
    record: Path  # <stem>.json: find --json's record
    heatmap: Path  # per-token heat maps of the prompt (explain)
    summary: dict[str, Any] = field(default_factory=dict)  # the record


@dataclass
class TrackOutput:
    video: Path  # <stem>.overlay.mp4, as `personaseg track` writes it
    records: Path  # <stem>.jsonl: track --json's line per frame
    frames: int
    found: int  # frames with the phrase


@dataclass
class LearnJob:
    photos: list[Path]
    token: str  # "<name>", checked
    config: Any  # LearnConfig, or None to resume with the interrupted run's
    force: bool = False
    resume: bool = False
    clicks: Any = None  # learn's clicks= / boxes=: {photo: (x, y)} / {photo: (x0, y0, x1, y1)} or "PHOTO=..." strings
    boxes: Any = None


class Workspace:
    """One model, one concept store, one scratch folder for results; one find and one learn at a time."""

    def __init__(self, model: str | None, scratch: Path, concepts_dir: Path | None = None,
                 device: str | None = None, dtype: str | None = None):
        from ..concepts import ConceptStore

        self.model, self.device, self.dtype = model, device, dtype
        self.concepts_dir = concepts_dir
        self.store = ConceptStore(concepts_dir)
        self.scratch = Path(scratch)
        self._seg = None
        self._seg_key: tuple | None = None
        self._loaded: dict[str, Any] = {}  # concept name -> its "created" stamp, as put onto the find model
        self._find_lock = threading.Lock()
        self._learn_lock = threading.Lock()
        self._stop = threading.Event()

    # ------------------------------------------------------------------ find
    def segmenter(self, draws: int | None = None, seed: int | None = None, concept: str | None = None):
        """The find model, loaded once; loaded again when the settings change or ``concept`` was
        learned again since it was put onto the model (its token rows would differ)."""
        from ..segmenter import Segmenter

        key = (draws, seed)
        stamp = None
        if concept is not None:
            c = self.store.get(concept)  # an unknown or badly named concept fails here, as in find
            stamp = c.meta.get("created"), str(c.path)
        stale = concept is not None and concept in self._loaded and self._loaded[concept] != stamp
        if self._seg is None or key != self._seg_key or stale:
            self._seg, self._loaded = None, {}
            self._seg = Segmenter.from_pretrained(
                self.model, device=self.device, dtype=self.dtype, concepts_dir=self.concepts_dir,
                draws=draws, seed=seed,
            )
            self._seg_key = key
        if concept is not None:
            self._loaded[concept] = stamp
        return self._seg

    def find(self, image_path: str | Path, phrase: str, draws: int | None = None, seed: int | None = None,
             ) -> tuple[FindOutput, list[str]]:
        """Outline ``phrase`` (a word, or a learned ``<concept>``) in one image; writes find's files."""
        from ..concepts.store import concept_name
        from ..images import load_image
        from ..io import save_png_atomic
        from ..masks import find_record
        from ..viz import heatmap_grid, overlay

        start = time.perf_counter()
        if not image_path:
            raise InputError("no image", hint="drop an image to search in")
        phrase = " ".join((phrase or "").split())
        if not phrase:
            raise InputError("the phrase is empty", hint='type a word such as "mug" or pick a concept like "<mymug>"')
        path = Path(image_path)
        image = load_image(path)  # a file that is no image fails here, naming it
        concept = concept_name(phrase) if phrase.startswith("<") and phrase.endswith(">") else None
        with self._find_lock, collecting_warnings() as notes:
            seg = self.segmenter(draws, seed, concept)
            seg.set_image(image)
            r = seg.find(phrase)
            ex = seg.explain(phrase)  # the same prompt: its UNet pass is cached
        out = self._new_dir("find")
        stem = out / path.stem
        mask_path, overlay_path = Path(f"{stem}.mask.png"), Path(f"{stem}.overlay.png")
        save_png_atomic(mask_path, r.mask.astype(np.uint8) * 255)
        save_png_atomic(overlay_path, overlay(image, r.mask, phrase if r.found else f"{phrase}: not found"))
        heat_path = Path(f"{stem}.tokens.png")
        titles = [t.replace("</w>", "") for t in ex.tokens]  # as `personaseg explain` titles them
        save_png_atomic(heat_path, heatmap_grid(image, list(ex.maps), titles, tile=192))
        record = find_record(path.name, phrase, r, image.size, mask_path.name, time.perf_counter() - start)
        record_path = Path(f"{stem}.json")
        record_path.write_text(json.dumps(record) + "\n")
        return FindOutput(mask_path, overlay_path, record_path, heat_path, record), notes

    # ------------------------------------------------------------------ track
    def track(self, clip_path: str | Path, phrase: str, draws: int | None = None, seed: int | None = None,
              every: int = 1) -> tuple[TrackOutput, list[str]]:
        """``personaseg track PHRASE CLIP --json [--every N]``: follow ``phrase`` through a video file;
        writes track's files (``<stem>.overlay.mp4``, ``<stem>/masks/<frame>.png``) and its JSON lines."""
        from ..concepts.store import concept_name
        from ..io import save_png_atomic
        from ..masks import frame_record
        from ..track import TrackConfig
        from ..video import OverlayWriter, open_clip
        from ..viz import overlay

        if not clip_path:
            raise InputError("no clip", hint="drop a video file to track in")
        phrase = " ".join((phrase or "").split())
        if not phrase:
            raise InputError("the phrase is empty", hint='type a word such as "mug" or pick a concept like "<mymug>"')
        if every < 1:
            raise InputError(f"every {every} must be >= 1", hint="1 keeps every frame, 2 every other one")
        path = Path(clip_path)
        clip = open_clip(path)  # a file that is no video fails here, naming it
        concept = concept_name(phrase) if phrase.startswith("<") and phrase.endswith(">") else None
        out = self._new_dir("track")
        stem = clip.stem
        lines, frames, found = [], 0, 0
        with self._find_lock, collecting_warnings() as notes:
            seg = self.segmenter(draws, seed, concept)
            config = TrackConfig(draws=draws) if draws else None  # track's default mode: temporal
            with OverlayWriter(out / f"{stem}.overlay.mp4", clip.fps / every) as video:
                for r in seg.track(clip.frames(None, None, every), phrase, config=config):
                    name = f"{r.index:05d}.png"
                    save_png_atomic(out / stem / "masks" / name, r.mask)
                    video.write(overlay(r.image, r.mask, f"{phrase} {r.time:.2f}s" if r.found
                                        else f"{phrase}: not found"))
                    lines.append(json.dumps(frame_record(path.name, r, f"{stem}/masks/{name}")))
                    frames, found = frames + 1, found + int(r.found)
        records = out / f"{stem}.jsonl"
        records.write_text("".join(line + "\n" for line in lines))
        return TrackOutput(out / f"{stem}.overlay.mp4", records, frames, found), notes

    # ------------------------------------------------------------------ learn
    def plan_learn(self, photos: list[str | Path], token: str, class_word: str | None = None,
                   method: str | None = None, steps: int | None = None, *, replace: bool = False,
                   resume: bool = False, clicks: dict | list[str] | None = None,
                   boxes: dict | list[str] | None = None) -> LearnJob:
        """Check a learn before it starts (fast, no model): ``personaseg learn PHOTOS --token T
        [--class-word W --method M --steps N] [--click PHOTO=X,Y | --box PHOTO=X0,Y0,X1,Y1]
        [--force | --resume]``; a click or box is checked as learn checks it (names a photo, inside it)."""
        from ..concepts import LearnConfig
        from ..concepts.checkpoint import CHECKPOINT_FILE
        from ..concepts.masks import Guidance
        from ..concepts.textual_inversion import parse_token
        from ..config import build_config

        photos = [Path(p) for p in photos or []]
        if not photos:
            raise InputError("no photos", hint="drop 3-10 photos of your object")
        if len(photos) > MAX_PHOTOS:
            raise InputError(f"{len(photos)} photos: at most {MAX_PHOTOS} per concept", hint="3-10 photos work best")
        name, token = parse_token(token or "", quiet=True)  # as the CLI names concepts (no path tricks)
        interrupted = (self.store.run_dir(name) / CHECKPOINT_FILE).exists()
        if resume and not interrupted:
            raise ConceptError(f"no interrupted run of {token} to resume", hint="press Learn to start it")
        if not resume and not replace:
            if self.store.exists(name):
                raise ConceptError(f"concept {token} already exists",
                                   hint="tick 'Replace' to learn it again, or choose another token")
            if interrupted:
                raise ConceptError(f"an interrupted run of {token} exists",
                                   hint="press Resume to continue it, or tick 'Replace' to start over")
        flags = {"class_word": (class_word or "").strip() or None, "method": method or None, "steps": steps}
        config = None if resume else build_config(LearnConfig, None, flags)
        if clicks or boxes:
            Guidance(photos, None, boxes, clicks)  # what learn checks first: the photo named, the point inside it
        return LearnJob(photos, token, config, force=replace and not resume, resume=resume, clicks=clicks or None,
                        boxes=boxes or None)

    def learn(self, job: LearnJob, on_step: Callable[[int, int, float], None] | None = None):
        """Run a planned learn (``personaseg.learn``), told each step; :meth:`stop_learn` stops it
        after the step in progress (checkpoint saved: resume it with ``plan_learn(..., resume=True)``)."""
        from ..concepts import learn

        if not self._learn_lock.acquire(blocking=False):
            raise ConceptError("another learn is running", hint="wait for it to finish, or stop it")
        self._stop.clear()

        def told(step: int, total: int, loss: float) -> bool:
            if on_step is not None:
                on_step(step, total, loss)
            return self._stop.is_set()

        try:
            return learn(job.photos, job.token, job.config, model=self.model, concepts_dir=self.concepts_dir,
                         force=job.force, resume=job.resume, progress=told, clicks=job.clicks, boxes=job.boxes)
        finally:
            self._learn_lock.release()

    def derived_masks(self, concept) -> list[Path]:
        """The masks learn drew from a click or box (the concept's ``masks/<photo stem>.png``, 0/255),
        copied to the scratch folder (the page serves files from there only)."""
        names = concept.meta.get("derived_masks", [])
        if not names:
            return []
        out = self._new_dir("masks")
        return [Path(shutil.copy2(concept.path / m, out / Path(m).name)) for m in names]

    def stop_learn(self) -> bool:
        """Ask the running learn to stop after its step; False when none runs."""
        if not self._learn_lock.locked():
            return False
        self._stop.set()
        return True

    # ------------------------------------------------------------------ concepts
    def concepts(self) -> list:
        return self.store.list()

    def remove(self, name: str) -> Path:
        return self.store.remove(name)

    def export(self, name: str, format: str = "diffusers") -> Path:
        """``concepts export``; a LoRA concept's folder comes back as a .zip to download."""
        concept = self.store.get(name)
        out = self._new_dir("export") / (concept.name if concept.method == "lora" else f"{concept.name}.safetensors")
        path = self.store.export(concept.name, out, format=format)
        if path.is_dir():
            path = Path(shutil.make_archive(str(path), "zip", root_dir=path))
        return path

    def _new_dir(self, what: str) -> Path:
        d = self.scratch / f"{what}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d
