"""Learning the benchmark's concepts through ``personaseg.concepts.learn``, with a cache.

A concept is reused when its photos (bytes), its learn settings and the model are the same: those
three go into a hash, and the hash into the concept's token, ``<bench-NAME-METHOD-HASH>``; a token
already in the concept store (:func:`default_concepts_dir` unless the run names one) is loaded
instead of learned again. :func:`learn_all` is the learn phase of ``bench personal`` and ``bench video``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..config import build_config, to_dict
from ..errors import DatasetError
from ..io import save_png_atomic
from ..runtime import home_dir, wait
from .config import learned_method, row_guide
from .data import BenchWarning, ConceptSpec, mask_array

# LearnConfig fields added after concepts were cached: left unset they do not enter the key, so a
# concept learned before they existed (same photos, settings, model) is still found in the cache.
NEWER_FIELDS = ("attention_weight", "masked_loss", "guided_steps", "stop_when_stable", "guided_stop_when_stable")


@dataclass
class LearnJob:
    """One concept to learn (or reuse) with one method."""

    concept: ConceptSpec
    method: str  # "ti" | "lora"
    config: Any  # LearnConfig with the concept's class word
    token: str  # "<bench-NAME-METHOD-HASH>", derived from photos (and masks) + config + model
    row: str = ""  # the report row it serves: the method, or "ti+masks" / "ti+box" / "ti+click"

    @property
    def guide(self) -> str:
        """"+masks", "+box", "+click": learned from the photos' masks, their boxes, a click in each; "": plain."""
        return row_guide(self.row)


def default_concepts_dir() -> Path:
    """Where benchmark concepts are cached across runs: ``$PERSONASEG_HOME/bench-concepts``, else
    the user cache folder (kept apart from the user's own concept store)."""
    return home_dir("bench-concepts")


def learn_config(method: str, overrides: dict[str, Any], class_word: str, seed: int | None):
    """LearnConfig: defaults < seed < recipe/flag overrides < the method and the concept's class word."""
    from ..concepts import LearnConfig

    seed_layer = {"seed": seed} if seed is not None else None
    return build_config(LearnConfig, seed_layer, overrides, {"method": method, "class_word": class_word},
                        source="the bench recipe / flags")


def _photo_bytes(photo: Any) -> bytes:
    if isinstance(photo, (str, Path)):
        return Path(photo).read_bytes()
    buf = io.BytesIO()
    photo.save(buf, format="PNG")  # an in-memory image (HF datasets): hash its pixels as PNG
    return buf.getvalue()


def concept_token(spec: ConceptSpec, method: str, config: Any, model_id: str, guide: str = "") -> str:
    """The cache key as a concept token: same photos, settings and model -> same token.

    A local model counts by its contents (:func:`personaseg.models.model_fingerprint`): concepts
    learned on older weights or under a model card whose learn-side settings differ are not reused
    (its mask-only find settings may change: :data:`personaseg.models.MASK_ONLY_FIND`)."""
    from ..models import model_fingerprint

    h = hashlib.sha256()
    for photo in spec.photos:
        h.update(hashlib.sha256(_photo_bytes(photo)).digest())
    if guide:  # the masks it learned from (or their boxes, or a click in each)
        for mask in spec.masks or []:
            h.update(hashlib.sha256(_photo_bytes(mask) if mask is not None else b"-").digest())
        method = method + "-" + guide.lstrip("+")
    settings = {k: v for k, v in to_dict(config.resolved()).items() if not (k in NEWER_FIELDS and v is None)}
    if not guide:
        settings.pop("guided_stop_when_stable", None)  # a learn without masks does not read it
    if "stop_when_stable" not in settings and "guided_stop_when_stable" not in settings:
        settings.pop("stop_check_every", None)  # read only by a stopping rule
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(model_id.encode())
    h.update(model_fingerprint(model_id).encode())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.name).strip("-.") or "concept"
    return f"<bench-{name}-{method}-{h.hexdigest()[:10]}>"


def plan(concepts: list[ConceptSpec], methods: list[str], overrides: dict[str, Any], seed: int | None,
         model_id: str) -> list[LearnJob]:
    """One job per (concept, learned row), in a fixed order (every process computes the same).
    A ``METHOD+masks`` row learns with the photos' masks; a concept without any is a DatasetError."""
    jobs = []
    for spec in concepts:
        for row in methods:
            method = learned_method(row)
            guide = row_guide(row)
            if guide and not spec.masks:
                raise DatasetError(f"{spec.source}: concept {spec.name!r} has no photo masks for --photo-masks",
                                   hint="add masks/<photo stem>.png beside its photos (PerSeg: Annotations/<obj>/), "
                                        "or leave --photo-masks out")
            cfg = learn_config(method, overrides, spec.class_word, seed)
            jobs.append(LearnJob(spec, method, cfg, concept_token(spec, method, cfg, model_id, guide), row))
    return jobs


def cached(token: str, concepts_dir: Path) -> bool:
    """Whether the store already holds this token's concept."""
    from ..concepts import ConceptStore

    return ConceptStore(concepts_dir).exists(token)


def run_job(job: LearnJob, model: str | None, concepts_dir: Path, stage: Path, hit: bool) -> dict[str, Any]:
    """Learn ``job`` unless ``hit`` (cached); returns the record for learn.jsonl.

    Under ``accelerate launch`` every process calls this for the same job: ``learn`` is itself
    data-parallel over the processes (it synchronises them), so jobs are not split between them.
    An interrupted learn of the same token (same photos, settings, model) is resumed.
    """
    from ..concepts import ConceptStore, learn
    from ..concepts.checkpoint import CHECKPOINT_FILE

    start = time.perf_counter()
    if not hit:
        photos = [p if isinstance(p, (str, Path)) else _stage(p, stage / job.concept.name, i)
                  for i, p in enumerate(job.concept.photos)]
        resume = (ConceptStore(concepts_dir).run_dir(job.token) / CHECKPOINT_FILE).exists()
        extra = _guidance(job, photos)
        concept = learn(photos, job.token, job.config, model=model, concepts_dir=concepts_dir, resume=resume,
                        progress=False, **extra)
    else:
        concept = ConceptStore(concepts_dir).get(job.token)
    return {"concept": job.concept.name, "method": job.row or job.method, "token": job.token, "cached": hit,
            "learn_s": 0.0 if hit else time.perf_counter() - start,
            "concept_learn_s": (getattr(concept, "meta", None) or {}).get("learn_seconds"),
            "concept_learn_cpu_s": (getattr(concept, "meta", None) or {}).get("learn_cpu_seconds")}


def learn_all(jobs: list[LearnJob], model: str | None, concepts_dir: Path, run: Any, bar: Any = None) -> None:
    """Learn (or take from the cache) each job, one ``learn.jsonl`` line each in ``run`` (a
    :class:`~personaseg.bench.rundir.RunDir`). Every process takes part in each learn (``learn`` is
    data-parallel itself); ``bar``: the runner's progress bar, or None."""
    hits = [cached(j.token, concepts_dir) for j in jobs]  # decided before anyone writes
    wait()
    task = bar.add_task("learn concepts", total=len(jobs)) if bar else None
    run_id = time.strftime("%Y%m%dT%H%M%S")
    for job, hit in zip(jobs, hits):
        rec = run_job(job, model, concepts_dir, run.path / "photos", hit)
        run.log_learned({**rec, "run": run_id})
        if bar:
            bar.advance(task)
    wait()


def refresh_references(seg, jobs: list[LearnJob], write: bool = True) -> list[str]:
    """Read again, with the run's finder ``seg``, the presence reference of each job's concept that
    was measured otherwise (cached before find read presence as it does now, e.g. with the class
    word), and write it into its ``concept.json`` (``write``: this process owns the store); one
    warning line says how many. Without this a cached concept's relative-presence rule would be
    skipped. Returns the tokens refreshed."""
    from ..concepts import calibrate

    refreshed = []
    for job in jobs:
        concept, _ = seg.load_concept(job.token)
        at = concept.meta.get("presence_ref_at")
        if not concept.meta.get("presence_ref") or at is None or at == seg.reference_settings(job.token):
            continue
        meta = calibrate.with_reference(concept.meta, calibrate.measure(seg, concept, list(job.concept.photos)))
        concept.meta.clear()
        concept.meta.update(meta)  # the loaded concept find reads
        if write:
            calibrate.write_meta(concept.path, meta)
        refreshed.append(job.token)
    if refreshed:
        warnings.warn(f"re-read the presence reference of {len(refreshed)} cached concept(s) on their photos: it "
                      "was measured with other find settings (e.g. before presence was read with the class word)",
                      BenchWarning, stacklevel=2)
    return refreshed


def _guidance(job: LearnJob, photos: list[Path]) -> dict[str, Any]:
    """learn's masks / boxes / clicks for a guided job: photo -> its mask file, the mask's bounding
    box, or its most interior pixel (photos without a mask are learned unguided)."""
    if not job.guide:
        return {}
    pairs = [(str(p), m) for p, m in zip(photos, job.concept.masks) if m is not None]
    if job.guide == "+masks":
        return {"masks": dict(pairs)}
    from ..masks import bbox

    if job.guide == "+box":
        return {"boxes": {p: bbox(mask_array(m, str(m))) for p, m in pairs}}
    return {"clicks": {p: interior_point(mask_array(m, str(m))) for p, m in pairs}}


def interior_point(mask) -> tuple[int, int]:
    """(x, y) of the mask pixel farthest from its border: where a user clicks on the object."""
    import numpy as np
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # (H, W), 0 outside
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def _stage(image: Image.Image, folder: Path, i: int) -> Path:
    """Write an in-memory photo to a file (learn reads photos from files)."""
    path = folder / f"{i:03d}.png"
    if not path.exists():
        save_png_atomic(path, image.convert("RGB"))
    return path
