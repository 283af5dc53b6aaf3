"""A sample's load: a missing mask or one of another size is a bad sample (the dataset still opens)."""

import shutil

import numpy as np
import pytest
from PIL import Image

from personaseg.bench import examples
from personaseg.bench.datasets import open_dataset
from personaseg.errors import DatasetError


@pytest.fixture(scope="module")
def mug19(tmp_path_factory):
    return examples.make_mug19(tmp_path_factory.mktemp("mug19"))


def test_missing_mask_is_a_bad_sample(mug19, tmp_path):
    root = shutil.copytree(mug19, tmp_path / "d")
    (root / "test" / "masks" / "redmug-alone" / "redmug.png").unlink()
    data = open_dataset(root)  # the dataset still opens: one sample is bad
    bad = [s for s in data.samples if s.image == "images/redmug-alone.png"][0]
    with pytest.raises(DatasetError, match="redmug.png is missing"):
        bad.load()


def test_mask_of_other_size(mug19, tmp_path):
    root = shutil.copytree(mug19, tmp_path / "d")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(root / "test" / "masks" / "bluebox-alone" / "bluebox.png")
    bad = [s for s in open_dataset(root).samples if s.image == "images/bluebox-alone.png"][0]
    with pytest.raises(DatasetError, match=r"bluebox.png: mask is 12x10 but its image is 64x64"):
        bad.load()
