"""The PASCAL VOC layout reader on a tiny generated VOC layout."""

import numpy as np
import pytest

from personaseg.bench import examples
from personaseg.bench.pascal import read_voc
from personaseg.errors import DatasetError


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return examples.make_voc(tmp_path_factory.mktemp("voc"), images=4)


def test_read_voc(voc):
    samples = read_voc(voc, "train")
    assert [s.image for s in samples] == [f"2007_{k:06d}" for k in range(4)]
    image, labels = samples[1].load()
    assert labels.shape == (image.height, image.width)
    assert set(np.unique(labels)) <= {0, 5, 9, 15, 255} and (labels == 255).any()
    with pytest.raises(DatasetError, match="val.txt is missing"):
        read_voc(voc, "val")
