"""The toy video benchmark: DAVIS layout, motion, size change, occlusion, leaving and coming back."""

import json

import numpy as np
import pytest
from PIL import Image

from personaseg.errors import InputError
from personaseg.toyworld.video import make_video_bench


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_video_bench(tmp_path_factory.mktemp("v") / "toy", seed=2, sequences=6, frames=20)


def _masks(root, seq):
    folder = root / "Annotations" / "480p" / seq
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def test_layout_tags_and_photos(bench):
    root = bench.root
    seqs = (root / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert seqs == list(bench.sequences) and len(seqs) == 6
    assert [bench.sequences[s][0] for s in seqs] == ["alone", "distractor", "leaves"] * 2
    meta = json.loads((root / "meta.json").read_text())
    for s in seqs:
        assert len(list((root / "JPEGImages" / "480p" / s).glob("*.png"))) == 20
        assert len(list((root / "photos" / s / "1").glob("*.png"))) == 4
        assert meta["sequences"][s]["objects"]["1"]["class_word"] == s.split("-")[0]
        with Image.open(root / "Annotations" / "480p" / s / "00000.png") as im:
            assert im.mode == "P"  # DAVIS: palette PNGs, index = object id


def test_the_instance_moves_resizes_and_leaves(bench):
    for s, (tag,) in bench.sequences.items():
        present = [m == 1 for m in _masks(bench.root, s)]
        if tag == "leaves":
            seen = [p.any() for p in present]
            assert seen[0] and seen[-1] and not all(seen)  # out of view in the middle, back at the end
        else:
            centres = [np.argwhere(p).mean(0) for p in present if p.any()]
            assert np.abs(centres[-1] - centres[0]).max() > 2  # it moved
    assert bench.absent_frames > 0


def test_distractors_share_the_instance_shape(bench):
    root = bench.root
    for s, (tag,) in bench.sequences.items():
        if tag != "distractor":
            continue
        frame = np.asarray(Image.open(root / "JPEGImages" / "480p" / s / "00000.png")).astype(int)
        coloured = (frame.max(-1) - frame.min(-1)) > 100
        instance = _masks(root, s)[0] == 1
        assert (coloured & ~instance).sum() > 50  # other objects drawn besides the instance


def test_refuses_a_non_empty_out(bench):
    with pytest.raises(InputError, match="not empty"):
        make_video_bench(bench.root, seed=1, sequences=1, frames=3)
