"""SIGKILL during the final write of a learned concept, or mid-training (issue 21): the store
never shows a half-written concept, the next run cleans up, a replaced concept comes back, and
the run resumes to the same result as an uninterrupted one, bit for bit. Slow: each case starts Python processes that load
torch and diffusers (about a minute on 2 shared cores)."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from personaseg.concepts import ConceptStore, LearnConfig, learn

pytestmark = pytest.mark.slow

CHILD = """
import os, sys, time
import torch
from personaseg.concepts import LearnConfig, learn, store
torch.set_num_threads(1)  # as the test process (tests/concepts/conftest.py): the same sums, bit for bit
point, model, photos, root = sys.argv[1:5]
real_replace, real_meta = os.replace, store.ConceptStore.write_meta

def stop(where):
    print(where, flush=True)
    time.sleep(120)  # killed here

def write_meta(folder, meta):
    real_meta(folder, meta)
    if point == "in-temp-folder":
        stop(point)

def replace(a, b):
    real_replace(a, b)
    if point == "between-renames" and os.path.basename(str(b)).startswith(".old"):
        stop(point)

from personaseg.concepts.trainer import Trainer
real_step = Trainer.train_step

def train_step(self, i):
    loss = real_step(self, i)
    if point.startswith("after-step-") and i + 1 == int(point.rsplit("-", 1)[1]) + 1:
        stop(point)  # step N's checkpoint is written; step N+1 is done but not saved
    return loss

Trainer.train_step = train_step
store.ConceptStore.write_meta = staticmethod(write_meta)
os.replace = replace
steps = 4 if point.startswith("after-step-") else 2
cfg = LearnConfig(class_word="mug", steps=steps, resolution=32, grad_accum=1, checkpoint_every=1, measure_presence=False)
learn(photos, "<mymug>", cfg, model=model, concepts_dir=root, force=point == "between-renames", progress=False)
print("finished", flush=True)
"""


def _cfg(steps: int = 2) -> LearnConfig:
    return LearnConfig(class_word="mug", steps=steps, resolution=32, grad_accum=1, checkpoint_every=1,
                       measure_presence=False)


def _kill_at(point: str, tiny_sd, photos, root) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, point, str(tiny_sd), str(photos), str(root)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == point
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()


def test_kill_inside_the_final_write_shows_nothing_and_resumes_to_the_same_result(tiny_sd, photos, tmp_path):
    root = tmp_path / "store"
    _kill_at("in-temp-folder", tiny_sd, photos, root)
    store = ConceptStore(root)
    assert store.names() == [] and store.list() == []
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]  # cleaned up by the next run
    resumed = learn(photos, "<mymug>", None, model=str(tiny_sd), concepts_dir=root, resume=True, progress=False)
    straight = learn(photos, "<mymug>", _cfg(), model=str(tiny_sd), concepts_dir=tmp_path / "straight", progress=False)
    a = load_file(str(resumed.path / "learned_embeds.safetensors"))
    b = load_file(str(straight.path / "learned_embeds.safetensors"))
    assert torch.equal(a["<mymug>"], b["<mymug>"])
    assert [c.name for c in store.list()] == ["mymug"] and not (root / ".runs" / "mymug").exists()


def test_kill_between_the_renames_of_a_replace_brings_the_old_concept_back(tiny_sd, photos, tmp_path):
    root = tmp_path / "store"
    first = learn(photos, "<mymug>", _cfg(), model=str(tiny_sd), concepts_dir=root, progress=False)
    before = first.embeddings()
    _kill_at("between-renames", tiny_sd, photos, root)
    assert not (root / "mymug").exists()  # the moment the kill caught: the old one moved aside
    store = ConceptStore(root)
    assert [c.name for c in store.list()] == ["mymug"]
    assert torch.equal(store.get("mymug").embeddings(), before)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".runs")) == ["mymug"]


@pytest.mark.parametrize("step", [1, 2])
def test_kill_mid_training_resumes_bit_for_bit(tiny_sd, photos, tmp_path, step):
    root = tmp_path / "store"
    _kill_at(f"after-step-{step}", tiny_sd, photos, root)
    assert ConceptStore(root).names() == [] and (root / ".runs" / "mymug" / "checkpoint.safetensors").is_file()
    resumed = learn(photos, "<mymug>", None, model=str(tiny_sd), concepts_dir=root, resume=True, progress=False)
    straight = learn(photos, "<mymug>", _cfg(4), model=str(tiny_sd), concepts_dir=tmp_path / "straight",
                     progress=False)
    assert resumed.meta["final_loss"] == straight.meta["final_loss"]
    assert torch.equal(resumed.embeddings(), straight.embeddings())
