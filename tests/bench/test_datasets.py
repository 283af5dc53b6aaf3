"""Dataset readers on tiny generated layouts, and bad datasets."""

import json

import numpy as np
import pytest
from PIL import Image

from personaseg.bench import examples
from personaseg.bench.datasets import detect_layout, open_dataset, perseg_class_word
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


def test_mug19_subset_filter(mug19):
    data = open_dataset(mug19, subsets=["distractor"])
    assert len(data.samples) == 2 and all("distractor" in s.subset for s in data.samples)
    with pytest.raises(DatasetError, match="unknown subset tag.*nope"):
        open_dataset(mug19, subsets=["nope"])


def test_perseg_shots(tmp_path):
    root = examples.make_perseg(tmp_path / "perseg", images=4)
    data = open_dataset(root)
    assert data.layout == "perseg" and set(data.concepts) == {"mug2", "box2"}
    assert [p.name for p in data.concepts["mug2"].photos] == ["00.jpg"]
    assert len(data.samples) == 6 and data.concepts["mug2"].class_word == "mug"
    data = open_dataset(root, shots=2)
    assert [p.name for p in data.concepts["mug2"].photos] == ["00.jpg", "01.jpg"] and len(data.samples) == 4
    image, mask = data.samples[0].load()
    assert mask.any()
    with pytest.raises(DatasetError, match="need more than --shots 4"):
        open_dataset(root, shots=4)


def test_perseg_class_word():
    assert perseg_class_word("dog2") == "dog"
    assert perseg_class_word("bear_plushie") == "bear plushie"


def test_hf_saved_dataset(tmp_path):
    pytest.importorskip("datasets")
    root = examples.make_hf(tmp_path / "hf")
    assert detect_layout(root) == "hf"
    data = open_dataset(root)
    assert set(data.concepts) == {"redmug", "bluebox"} and data.concepts["bluebox"].class_word == "box"
    assert len(data.samples) == 6
    image, mask = data.samples[1].load()
    assert mask.shape == (image.height, image.width) and mask.any()
    with pytest.raises(DatasetError, match="no split 'val'"):
        open_dataset(root, split="val")


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_mask_is_a_bad_sample(mug19, tmp_path):
    root = _copy(mug19, tmp_path / "d")
    (root / "test" / "masks" / "redmug-alone" / "redmug.png").unlink()
    data = open_dataset(root)  # the dataset still opens: one sample is bad
    bad = [s for s in data.samples if s.image == "images/redmug-alone.png"][0]
    with pytest.raises(DatasetError, match="redmug.png is missing"):
        bad.load()


def test_mask_of_other_size(mug19, tmp_path):
    root = _copy(mug19, tmp_path / "d")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(root / "test" / "masks" / "bluebox-alone" / "bluebox.png")
    bad = [s for s in open_dataset(root).samples if s.image == "images/bluebox-alone.png"][0]
    with pytest.raises(DatasetError, match=r"bluebox.png: mask is 12x10 but its image is 64x64"):
        bad.load()


def test_concept_without_photos(mug19, tmp_path):
    root = _copy(mug19, tmp_path / "d")
    for p in (root / "concepts" / "redmug" / "photos").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="photos: concept 'redmug' has no photos"):
        open_dataset(root)


def test_empty_and_broken_datasets(tmp_path):
    (tmp_path / "e" / "test").mkdir(parents=True)
    (tmp_path / "e" / "test" / "index.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no test samples"):
        open_dataset(tmp_path / "e")
    (tmp_path / "e" / "test" / "index.jsonl").write_text(json.dumps({"image": "a.png"}) + "\n")
    with pytest.raises(DatasetError, match=r"index.jsonl:1: bad index line"):
        open_dataset(tmp_path / "e")
    with pytest.raises(DatasetError, match="not a benchmark folder"):
        open_dataset(tmp_path)
