"""A concept drawn with its class word (outline "with-class") is also found with it: learn reads the
joint presence on its photos, find compares the joint presence with it, and a concept whose reference
was read on the token alone (learned before) is skipped with a warning until read again."""

from __future__ import annotations

import json
import shutil
import warnings
from types import SimpleNamespace

import pytest

from personaseg.concepts import learn
from personaseg.images import collect_images
from personaseg.policy import PresenceWarning


@pytest.fixture
def with_class_model(tiny_sd, tmp_path):
    """The tiny model with a card that draws concepts with their class word."""
    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    (model / "personaseg.json").write_text(json.dumps({"find": {"long_side": 64, "outline": "with-class"}}))
    return model


def _as_learned_before(concept) -> dict:
    """Rewrite ``concept``'s concept.json as learn wrote it before presence was read with the class
    word (the token's own reference, no "read" in its settings); returns that meta."""
    old = {k: v for k, v in concept.meta.items() if k != "token_presence_ref"}
    old["presence_ref"] = concept.meta["token_presence_ref"]
    old["presence_ref_at"] = {k: v for k, v in old["presence_ref_at"].items() if k != "read"}
    (concept.path / "concept.json").write_text(json.dumps(old, indent=2))
    return old


def _segmenter(model, concepts, **kw):
    from personaseg.segmenter import Segmenter

    return Segmenter.from_pretrained(str(model), device="cpu", concepts_dir=concepts, **kw)


def test_learn_reads_the_joint_presence_and_find_compares_it(with_class_model, photos, tmp_path, tiny_cfg, run):
    concept = learn(photos, "<jm>", tiny_cfg(), model=str(with_class_model), concepts_dir=tmp_path / "c",
                    progress=False)
    meta = concept.meta
    assert meta["presence_ref_at"]["read"] == "with-class"
    seg = _segmenter(with_class_model, tmp_path / "c")
    joints, owns = [], []
    for path in collect_images([photos])[0]:
        seg.set_image(path)
        r = seg.find("<jm>")
        cls = seg.find("mug").presence
        # the peak of a geometric mean is at most the geometric mean of the peaks
        assert 0 < r.joint_presence <= (r.presence * cls) ** 0.5 + 1e-7
        assert r.relative_presence == pytest.approx(r.joint_presence / meta["presence_ref"])
        joints.append(r.joint_presence)
        owns.append(r.presence)
    assert meta["presence_ref"] == pytest.approx(sum(joints) / len(joints))
    assert meta["token_presence_ref"] == pytest.approx(sum(owns) / len(owns))
    assert seg.reference_settings("<jm>") == meta["presence_ref_at"]
    # find --json records it beside the token's own presence
    code, out, err = run("find", "<jm>", path, "--model", with_class_model, "--concepts-dir", tmp_path / "c",
                         "--out", tmp_path / "masks", "--json")
    record = json.loads(out.splitlines()[0])
    assert code == 0 and record["joint_presence"] == pytest.approx(r.joint_presence, abs=1e-6), err

    # drawn with its own map, the concept is read on its own map: the joint reference is not applied
    token = _segmenter(with_class_model, tmp_path / "c", outline="token", min_relative_presence=0.5)
    token.set_image(collect_images([photos])[0][0])
    with pytest.warns(PresenceWarning, match=r"<jm>.*\(read\)"):
        r = token.find("<jm>")
    assert r.joint_presence is None and r.relative_presence is None


def test_a_token_read_reference_is_skipped_then_read_again_by_the_bench(with_class_model, photos, tmp_path,
                                                                         tiny_cfg):
    from personaseg.bench.data import BenchWarning
    from personaseg.bench.learning import refresh_references

    concept = learn(photos, "<old>", tiny_cfg(), model=str(with_class_model), concepts_dir=tmp_path / "c",
                    progress=False)
    joint_ref = concept.meta["presence_ref"]
    _as_learned_before(concept)

    seg = _segmenter(with_class_model, tmp_path / "c", min_relative_presence=0.5)
    image = collect_images([photos])[0][0]
    seg.set_image(image)
    with pytest.warns(PresenceWarning, match=r"<old>.*\(read\)"):
        assert seg.find("<old>").relative_presence is None

    fresh = _segmenter(with_class_model, tmp_path / "c", min_relative_presence=0.5)
    job = SimpleNamespace(token="<old>", concept=SimpleNamespace(photos=collect_images([photos])[0]))
    with pytest.warns(BenchWarning, match="re-read the presence reference of 1 cached concept"):
        assert refresh_references(fresh, [job]) == ["<old>"]
    assert json.loads((concept.path / "concept.json").read_text())["presence_ref"] == pytest.approx(joint_ref)
    fresh.set_image(image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = fresh.find("<old>")
    assert r.relative_presence == pytest.approx(r.joint_presence / joint_ref)
    assert refresh_references(fresh, [job]) == []  # read as find reads it now: left alone


def test_concepts_calibrate_reads_the_reference_again_on_the_learned_photos_only(with_class_model, photos, tmp_path,
                                                                                 tiny_cfg, run):
    import numpy as np
    from PIL import Image

    from cli.test_learn_cli import _one_error_line  # tests/ is on the path (pytest's rootdir-less packages)

    store = tmp_path / "c"
    concept = learn(photos, "<cal>", tiny_cfg(), model=str(with_class_model), concepts_dir=store, progress=False)
    joint_ref = concept.meta["presence_ref"]
    old = _as_learned_before(concept)
    meta_file = concept.path / "concept.json"
    before = meta_file.read_bytes()

    others = tmp_path / "others"  # two of its photos and one it was not learned from
    others.mkdir()
    for p in sorted(photos.iterdir())[:2]:
        shutil.copy(p, others / p.name)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(others / "new.png")
    args = ("--model", with_class_model, "--concepts-dir", store)
    _one_error_line(*run("concepts", "calibrate", "<cal>", others, *args)[::2],
                    "<cal> was learned from 3 photo(s): 1 of them not given; new.png is not one of them")
    _one_error_line(*run("concepts", "calibrate", "<nope>", photos, *args)[::2], "<nope>")
    import torch
    from safetensors.torch import save_file

    save_file({"<imp>": torch.randn(1, 32)}, str(tmp_path / "imp.safetensors"))
    run("concepts", "import", tmp_path / "imp.safetensors", "--concepts-dir", store)
    _one_error_line(*run("concepts", "calibrate", "<imp>", photos, *args)[::2], "<imp> records no photos")
    assert meta_file.read_bytes() == before  # nothing written

    code, _, err = run("concepts", "calibrate", "cal", photos, *args)
    assert code == 0, err
    assert "<cal>: presence reference" in err and "read with its class word on 3 photos" in err
    meta = json.loads(meta_file.read_text())
    assert meta["presence_ref"] == pytest.approx(joint_ref) and meta["presence_ref_at"]["read"] == "with-class"
    assert {k: v for k, v in meta.items() if not k.endswith("presence_ref") and k != "presence_ref_at"} == {
        k: v for k, v in old.items() if not k.endswith("presence_ref") and k != "presence_ref_at"}
