"""make-bench writes the Mug19-style layout the harness reads, with correct masks and tags."""

import json

import numpy as np
import pytest
from PIL import Image

from personaseg.errors import InputError
from personaseg.toyworld.bench import make_bench


def test_layout_and_tags(tmp_path):
    out = tmp_path / "bench"
    summary = make_bench(out, seed=5, concepts=2, scenes=6, photos=3)
    assert len(summary.concepts) == 2
    rows = [json.loads(x) for x in (out / "test" / "index.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    for name in summary.concepts:
        shape, pattern, colour = name.split("-")
        assert (out / "concepts" / name / "concept.toml").read_text().strip() == f'class_word = "{shape}"'
        assert len(list((out / "concepts" / name / "photos").glob("*.png"))) == 3
    for row in rows:
        image = np.asarray(Image.open(out / "test" / row["image"]))
        mask = np.asarray(Image.open(out / "test" / row["mask"]))
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 255}
        assert (mask.any()) == ("absent" not in row["subset"])
        assert ("semantic-distractor" in row["subset"]) == ("distractor" in row["subset"])
    assert {t for r in rows for t in r["subset"]} == {"alone", "distractor", "semantic-distractor", "absent"}


def test_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_bench(a, seed=9, concepts=1, scenes=3, photos=1)
    make_bench(b, seed=9, concepts=1, scenes=3, photos=1)
    for f in sorted(p.relative_to(a) for p in a.rglob("*.png")):
        assert np.array_equal(np.asarray(Image.open(a / f)), np.asarray(Image.open(b / f)))


def test_harness_reads_it(tmp_path):
    from personaseg.bench.datasets import open_dataset

    make_bench(tmp_path / "b", seed=2, concepts=2, scenes=3, photos=2)
    data = open_dataset(tmp_path / "b")
    assert len(data.samples) == 6 and len(data.concepts) == 2


def test_refuses_non_empty_out(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(InputError):
        make_bench(tmp_path / "x", seed=0, concepts=1, scenes=1)


def test_photos_have_their_masks(tmp_path):
    """Each photo's mask is the instance's pixels: it covers the pixels that differ from the background."""
    from personaseg.bench.datasets import open_dataset

    make_bench(tmp_path / "b", seed=3, concepts=2, scenes=3, photos=2)
    for spec in open_dataset(tmp_path / "b").concepts.values():
        assert [m.name for m in spec.masks] == [p.name for p in spec.photos]
        for photo, mask in zip(spec.photos, spec.masks):
            m = np.asarray(Image.open(mask)) > 0
            assert m.shape == np.asarray(Image.open(photo)).shape[:2] and 0 < m.mean() < 0.9
