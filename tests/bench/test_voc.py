"""The VOC pseudo-mask benchmark on a tiny generated VOC layout, with the fake segmenter."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.functional.classification import multiclass_jaccard_index

from personaseg.bench import examples
from personaseg.bench.pascal import read_voc
from personaseg.bench.voc import VocConfig, run_voc

from .fakes import FakeSegmenter, assert_names_code_and_model, install


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return examples.make_voc(tmp_path_factory.mktemp("voc"), images=4)


def test_run_voc_matches_torchmetrics(monkeypatch, voc, tmp_path):
    install(monkeypatch)
    rep = run_voc(voc, VocConfig(out=tmp_path / "run", model="tiny", crf=True, save_masks=True), progress=False)
    assert set(rep["results"]) == {"t2m", "t2m+crf"}
    segs = [f for f in FakeSegmenter.finds if f[0] == "segment"]
    assert segs[0][1] == ("person",) and segs[2][1] == ("bottle", "chair")  # class order, VOC names
    assert {f[2] for f in segs} == {False, True}
    preds, gts = [], []
    for s in read_voc(voc):
        gts.append(torch.from_numpy(s.load()[1].astype(np.int64)))
        with Image.open(tmp_path / "run" / "masks" / "t2m" / f"{s.image}.png") as im:
            preds.append(torch.from_numpy(np.asarray(im).astype(np.int64)))
    ref = multiclass_jaccard_index(torch.cat([p.flatten() for p in preds]), torch.cat([g.flatten() for g in gts]),
                                   num_classes=21, ignore_index=255, average="none")
    present = [c for c in range(21) if any((g == c).any() or (p == c).any() for p, g in zip(preds, gts))]
    expected = float(ref[present].mean())
    assert rep["results"]["t2m"]["mIoU"] == pytest.approx(expected, abs=1e-6) and expected < 0.95
    assert rep["results"]["t2m"]["per_class"]["person"] == pytest.approx(float(ref[15]), abs=1e-6)
    assert rep["results"]["t2m"]["n"] == 4
    assert "| t2m |" in (tmp_path / "run" / "report.md").read_text()
    assert_names_code_and_model(rep, tmp_path / "run")


def test_a_bad_image_is_one_warning_line_in_the_cli(monkeypatch, voc, tmp_path, run):
    install(monkeypatch)
    root = shutil.copytree(voc, tmp_path / "voc")
    (root / "SegmentationClass" / "2007_000001.png").unlink()
    code, out, err = run("bench", "voc", root, "--model", "tiny", "--out", tmp_path / "run")
    warned = [line for line in err.splitlines() if "warning" in line.lower()]
    assert code == 0 and "Traceback" not in err
    assert warned == [f"warning: skipped: {root / 'SegmentationClass' / '2007_000001.png'} is missing "
                      "(every listed image needs its label PNG)"]
    assert "t2m: mIoU" in out and "(1 skipped)" in out


def test_the_crf_row_leaves_the_segmenters_config_alone(monkeypatch, voc, tmp_path):
    """The +crf row segments under a copy of the config: the config the segmenter was built with is
    never changed (it was flipped in place, and left flipped when segment raised)."""
    install(monkeypatch)
    import personaseg.segmenter as segmenter

    seen = []

    class Watching(FakeSegmenter):
        def __init__(self, config=None):
            super().__init__(config)
            self.given = self.config

        def segment(self, labels):
            seen.append((self.config.crf, self.given.crf))
            if self.config.crf and len(seen) > 2:
                raise RuntimeError("the CRF failed")
            return super().segment(labels)

    monkeypatch.setattr(segmenter, "Segmenter", Watching)
    with pytest.raises(RuntimeError, match="the CRF failed"):
        run_voc(voc, VocConfig(out=tmp_path / "run", model="tiny", crf=True), progress=False)
    assert [crf for crf, _ in seen] == [False, True, False, True]  # each row with its own CRF setting
    assert not any(given for _, given in seen)  # the segmenter's own config never said crf


def test_each_process_loads_on_its_own_device(monkeypatch, voc, tmp_path):
    """Under `accelerate launch` on GPUs each process finds on cuda:<rank>, as bench personal does."""
    import personaseg.bench.voc as voc_mod

    install(monkeypatch)
    devices = []

    class Recording(FakeSegmenter):
        @classmethod
        def from_pretrained(cls, model=None, *, device=None, **kw):
            devices.append(device)
            return super().from_pretrained(model, device=device, **kw)

    import personaseg.segmenter as segmenter
    monkeypatch.setattr(segmenter, "Segmenter", Recording)
    monkeypatch.setattr(voc_mod, "process_device", lambda: "cuda:1")
    run_voc(voc, VocConfig(out=tmp_path / "a", model="tiny", limit=1), progress=False)
    run_voc(voc, VocConfig(out=tmp_path / "b", model="tiny", limit=1, device="cpu"), progress=False)
    assert devices == ["cuda:1", "cpu"]  # an explicit --device still wins
