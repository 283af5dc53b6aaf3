"""The Hugging Face datasets layout reader (a save_to_disk folder)."""

import pytest

from personaseg.bench import examples
from personaseg.bench.datasets import detect_layout, open_dataset
from personaseg.errors import DatasetError


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
