"""The PerSeg layout reader."""

import pytest

from personaseg.bench import examples
from personaseg.bench.datasets import open_dataset
from personaseg.bench.perseg import perseg_class_word
from personaseg.errors import DatasetError


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
