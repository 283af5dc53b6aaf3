"""The Mug19-style layout reader, on the tiny generated example."""

import shutil

import pytest

from personaseg.bench import examples
from personaseg.bench.datasets import open_dataset
from personaseg.errors import DatasetError


@pytest.fixture(scope="module")
def mug19(tmp_path_factory):
    return examples.make_mug19(tmp_path_factory.mktemp("mug19"))


def test_mug19_reads_concepts_samples_and_tags(mug19):
    data = open_dataset(mug19)
    assert data.layout == "mug19"
    assert set(data.concepts) == {"redmug", "bluebox"}
    assert data.concepts["redmug"].class_word == "mug"
    assert len(data.concepts["redmug"].photos) == 2
    assert len(data.samples) == 6
    assert {"alone", "distractor", "semantic-distractor", "absent"} <= set(data.tags)
    for s in data.samples:
        image, mask = s.load()
        assert mask.shape == (image.height, image.width) and mask.dtype == bool
        assert mask.any() == ("absent" not in s.subset)


def test_concept_without_photos(mug19, tmp_path):
    root = shutil.copytree(mug19, tmp_path / "d")
    for p in (root / "concepts" / "redmug" / "photos").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="photos: concept 'redmug' has no photos"):
        open_dataset(root)
