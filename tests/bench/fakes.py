"""Stand-ins for learn and the segmenter, so the harness's bookkeeping is tested in seconds.

The fake segmenter finds the example data's objects by colour: a learned token finds its concept's
exact colour (a perfect personal mask); a class word finds every strongly coloured pixel (all
objects of any colour: wrong on distractor and absent samples). So the expected figures are known.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personaseg.bench.examples import COLOURS, CONCEPTS
from personaseg.config import FindConfig
from personaseg.errors import ConceptError
from personaseg.finder import Finder

COLOUR_OF = {name: COLOURS[colour] for name, _, colour in CONCEPTS}
COLOUR_OF.update({f"{word}2": COLOURS[colour] for _, word, colour in CONCEPTS})  # PerSeg example names


@dataclass
class FakeConcept:
    name: str
    token: str
    method: str
    meta: dict = field(default_factory=dict)


class FakeStore:
    def __init__(self, root=None):
        self.root = Path(root)

    def exists(self, token):
        return (self.root / token.strip("<>") / "done").exists()

    def run_dir(self, token):
        return self.root / ".runs" / token.strip("<>")

    def get(self, token):
        name = token.strip("<>")
        if not self.exists(token):
            raise ConceptError(f"unknown concept {token}")
        meta = self.root / name / "meta.json"
        return FakeConcept(name, token, name.split("-")[-2], json.loads(meta.read_text()) if meta.exists() else {})


LEARN_CALLS: list[str] = []
MASKS_GIVEN: dict[str, dict] = {}  # token -> the masks learn was given


def fake_learn(photos, token, config=None, *, model=None, concepts_dir=None, force=False, resume=False,
               progress=True, masks=None, boxes=None, clicks=None):
    assert photos and all(Path(p).is_file() for p in photos)
    LEARN_CALLS.append(token)
    if masks is not None:
        assert all(Path(m).is_file() for m in masks.values())
        MASKS_GIVEN[token] = masks
    for given in (boxes, clicks):
        if given is not None:
            MASKS_GIVEN[token] = given
    name = token.strip("<>")
    (Path(concepts_dir) / name).mkdir(parents=True, exist_ok=True)
    (Path(concepts_dir) / name / "done").write_text("ok")
    meta = {"learn_seconds": 1.5, "learn_cpu_seconds": 1.25}  # what learn stores in concept.json
    (Path(concepts_dir) / name / "meta.json").write_text(json.dumps(meta))
    return FakeConcept(name, token, config.method, meta)


VOC_COLOURS = {"person": COLOURS["red"], "chair": COLOURS["blue"], "bottle": COLOURS["green"]}


@dataclass
class FakeSegment:
    labels: list
    label_map: np.ndarray


@dataclass
class FakeResult:
    mask: np.ndarray
    scores: np.ndarray
    presence: float
    found: bool
    relative_presence: float | None = None
    timings: dict = field(default_factory=dict)


class FakeSegmenter:
    finds: list[str] = []  # every find, across instances (per test, reset by the fixture)

    def __init__(self, config=None):
        self.config = config or FindConfig()
        self.image = None

    @classmethod
    def from_pretrained(cls, model=None, *, device=None, dtype=None, config=None, concepts_dir=None, **kw):
        return cls(config)

    with_config = Finder.with_config  # the real one: it only swaps self.config for a changed copy

    def load_concept(self, token):  # fake_learn's concepts hold no presence reference: none to refresh
        return FakeConcept(token.strip("<>"), token, token.strip("<>").split("-")[-2]), [token]

    def set_image(self, image):
        self.image = np.asarray(image.convert("RGB")).astype(int)

    def find(self, phrase):
        FakeSegmenter.finds.append(phrase)
        a = self.image
        if phrase.startswith("<"):
            concept = phrase.strip("<>").split("-")[1]
            mask = (np.abs(a - np.array(COLOUR_OF[concept])).sum(-1) < 30)
        else:
            mask = (a.max(-1) - a.min(-1)) > 120  # any saturated object
        return FakeResult(mask, mask.astype(np.float32), float(mask.mean()), bool(mask.any()))

    def segment(self, labels):
        """VOC example scenes: each class is drawn in one colour; the map is shifted 2 px right (so
        it is imperfect); with crf, nothing changes."""
        FakeSegmenter.finds.append(("segment", tuple(labels), self.config.crf))
        out = np.zeros(self.image.shape[:2], np.uint8)
        for i, name in enumerate(labels):
            out[np.abs(self.image - np.array(VOC_COLOURS[name])).sum(-1) < 30] = i + 1
        return FakeSegment(list(labels), np.roll(out, 2, axis=1))


def install(monkeypatch):
    """Patch the public names the harness calls: concepts.learn / ConceptStore / LearnConfig, Segmenter."""
    import personaseg.concepts as concepts
    import personaseg.segmenter as segmenter
    from personaseg.concepts.config import LearnConfig

    monkeypatch.setattr(concepts, "learn", fake_learn, raising=False)
    monkeypatch.setattr(concepts, "ConceptStore", FakeStore, raising=False)
    monkeypatch.setattr(concepts, "LearnConfig", LearnConfig, raising=False)
    monkeypatch.setattr(segmenter, "Segmenter", FakeSegmenter)
    LEARN_CALLS.clear()
    MASKS_GIVEN.clear()
    FakeSegmenter.finds = []


class ThreadState:
    """accelerate's PartialState for N "processes" that are threads of this test (barrier = Barrier)."""

    def __init__(self, n):
        self.n = n
        self.barrier = threading.Barrier(n, timeout=60)
        self.local = threading.local()

    @property
    def process_index(self):
        return self.local.rank

    device = __import__("torch").device("cpu")

    @property
    def num_processes(self):
        return self.n

    @property
    def is_main_process(self):
        return self.local.rank == 0

    def wait_for_everyone(self):
        self.barrier.wait()

    # accelerate's own split, the one production's shard() calls through PartialState
    split_between_processes = __import__("accelerate").PartialState.split_between_processes


def assert_names_code_and_model(report: dict, rundir: Path) -> None:
    """A bench report says which code and which model its figures came from, in report.json and in
    report.md's headline."""
    from personaseg.models import model_fingerprint
    from personaseg.provenance import git_commit

    p = report["provenance"]
    assert p["model"] == report["model"] and p["model_fingerprint"] == model_fingerprint(report["model"])
    assert p["git_commit"] == git_commit()["commit"]
    assert f"model fingerprint {p['model_fingerprint'][:16]}" in (rundir / "report.md").read_text()
