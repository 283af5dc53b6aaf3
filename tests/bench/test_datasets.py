"""open_dataset: subset filters, and what is not a benchmark."""

import json

import pytest

from personaseg.bench import examples
from personaseg.bench.datasets import open_dataset
from personaseg.errors import DatasetError


@pytest.fixture(scope="module")
def mug19(tmp_path_factory):
    return examples.make_mug19(tmp_path_factory.mktemp("mug19"))


def test_mug19_subset_filter(mug19):
    data = open_dataset(mug19, subsets=["distractor"])
    assert len(data.samples) == 2 and all("distractor" in s.subset for s in data.samples)
    with pytest.raises(DatasetError, match="unknown subset tag.*nope"):
        open_dataset(mug19, subsets=["nope"])


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
