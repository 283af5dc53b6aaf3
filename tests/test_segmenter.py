"""The Segmenter on a tiny random pipeline: sizes, caching, call counts, determinism, errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from personaseg.config import FindConfig
from personaseg.errors import PhraseError
from personaseg.segmenter import Segmenter


def _seg(tiny_model_dir, **kw):
    cfg = FindConfig(**{"draws": 3, "long_side": 64, **kw})
    return Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", config=cfg)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((37, 90, 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def seg(tiny_model_dir):
    return _seg(tiny_model_dir)


def test_find_shapes_and_caching(seg, image):
    seg.set_image(image)
    calls = seg.unet_calls
    r = seg.find("mug")
    assert r.mask.shape == (37, 90) and r.mask.dtype == bool
    assert r.scores.shape == (37, 90) and 0 <= r.scores.min() and r.scores.max() <= 1
    assert r.prompt == "a photo of a mug" and r.presence > 0 and r.found
    assert seg.unet_calls == calls + 1  # 3 draws in one batched call
    seg.find("mug")
    assert seg.unet_calls == calls + 1  # same prompt: reused
    seg.find("cup")
    assert seg.unet_calls == calls + 2


def test_draw_batching_counts_calls_and_keeps_results(tiny_model_dir, image):
    a, b = _seg(tiny_model_dir, draw_batch=3), _seg(tiny_model_dir, draw_batch=1)
    a.set_image(image)
    b.set_image(image)
    ra, rb = a.find("dog"), b.find("dog")
    assert a.unet_calls == 1 and b.unet_calls == 3
    # same noise, same maps; only float summation order differs (amplified by min-max)
    assert np.allclose(ra.scores, rb.scores, atol=1e-3)


def test_seed_determinism(tiny_model_dir, image):
    s1, s2, s3 = (_seg(tiny_model_dir, seed=s) for s in (0, 0, 1))
    for s in (s1, s2, s3):
        s.set_image(image)
    r1, r2, r3 = (s.find("cat") for s in (s1, s2, s3))
    assert np.array_equal(r1.scores, r2.scores)
    assert not np.allclose(r1.scores, r3.scores)


def test_min_presence_gives_explicit_not_found(tiny_model_dir, image):
    seg = _seg(tiny_model_dir, min_presence=1.0)  # no softmax column can reach 1 here
    seg.set_image(image)
    r = seg.find("mug")
    assert not r.found and not r.mask.any()


def test_keep_strongest_keeps_one_region_of_the_full_mask(tiny_model_dir):
    from scipy import ndimage

    rng = np.random.default_rng(3)
    noise = Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8"))
    full, one = _seg(tiny_model_dir), _seg(tiny_model_dir, keep="strongest")
    for s in (full, one):
        s.set_image(noise)
    a, b = full.find("mug"), one.find("mug")
    assert ndimage.label(a.mask, np.ones((3, 3)))[1] > 1  # a random model's mask is scattered
    assert ndimage.label(b.mask, np.ones((3, 3)))[1] == 1
    assert not (b.mask & ~a.mask).any() and b.mask[np.unravel_index(np.argmax(np.where(a.mask, a.scores, -1)), a.mask.shape)]


def test_segment_and_explain(seg, image):
    seg.set_image(image)
    s = seg.segment(["cat", "dog"])
    assert s.prompt.startswith("a photo including cat, dog, tree")
    assert s.label_map.shape == (37, 90) and s.label_map.max() <= 2
    assert s.scores.shape == (3, 37, 90)
    e = seg.explain("red mug")
    assert e.tokens == ["a</w>", "photo</w>", "of</w>", "a</w>", "red</w>", "mug</w>"]
    assert e.maps.shape == (6, 37, 90)


def test_phrase_errors(seg, image):
    seg.set_image(image)
    with pytest.raises(PhraseError, match="empty"):
        seg.find("  ")
    with pytest.raises(PhraseError, match="not in the prompt"):
        seg.segment(["cat"], prompt="a photo of a dog")
    with pytest.raises(PhraseError, match="no '{}'"):
        seg.find("mug", prompt="a photo")
    with pytest.raises(PhraseError, match="tokens"):
        seg.find("mug " * 80)


def test_find_before_set_image(tiny_model_dir):
    with pytest.raises(RuntimeError, match="set_image"):
        _seg(tiny_model_dir).find("mug")


@pytest.fixture(scope="module")
def concepts(tiny_model_dir, tmp_path_factory):
    """A 2-vector TI concept and two LoRA concepts learned for 2 steps on the tiny model."""
    from personaseg.concepts import LearnConfig, learn

    root = tmp_path_factory.mktemp("concepts")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(photos / f"{i}.png")
    common = dict(class_word="mug", steps=2, resolution=32, checkpoint_every=0)
    learn(photos, "<twovec>", LearnConfig(method="ti", vectors=2, **common), model=str(tiny_model_dir),
          concepts_dir=root / "store", progress=False)
    for token in ("<lorathing>", "<loratwo>"):
        learn(photos, token, LearnConfig(method="lora", **common), model=str(tiny_model_dir),
              concepts_dir=root / "store", progress=False)
    return root / "store"


def test_find_concept_uses_all_sub_tokens(tiny_model_dir, concepts, image):
    seg = Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", concepts_dir=concepts,
                                    config=FindConfig(draws=2, long_side=64))
    seg.set_image(image)
    r = seg.find("<twovec>")
    assert "<twovec> <twovec>_1" in r.prompt
    text, phrase, _, _ = seg._resolve("<twovec>", None)
    assert len(seg.positions(text, [phrase])[0]) == 2
    assert r.mask.shape == (37, 90)


def test_keep_auto_is_one_region_for_a_concept_all_for_a_phrase(tiny_model_dir, concepts):
    from scipy import ndimage

    rng = np.random.default_rng(3)
    image = Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8"))

    def regions(mask):
        return ndimage.label(mask, np.ones((3, 3)))[1]

    auto, every = (Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", concepts_dir=concepts,
                                             config=FindConfig(draws=2, long_side=64, keep=k)) for k in ("auto", "all"))
    for s in (auto, every):
        s.set_image(image)
    concept_auto, concept_all = auto.find("<twovec>").mask, every.find("<twovec>").mask
    assert regions(concept_all) > 1 and regions(concept_auto) == 1  # the random model scatters it
    assert not (concept_auto & ~concept_all).any()
    assert np.array_equal(auto.find("mug").mask, every.find("mug").mask)  # a phrase keeps every region


def test_lora_concept_does_not_leak_into_plain_phrases(tiny_model_dir, concepts, image):
    seg = Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", concepts_dir=concepts,
                                    config=FindConfig(draws=2, long_side=64))
    seg.set_image(image)
    before = seg.find("mug").scores
    seg.find("<lorathing>")  # loads the LoRA adapter
    with torch.no_grad():  # make the adapter large, so that any leak would show
        for name, p in seg.pipe.unet.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    seg.clear_cache()  # run the UNet again for both
    after = seg.find("mug").scores
    assert np.allclose(before, after, atol=1e-5)


def test_lora_concepts_on_one_segmenter_each_use_only_their_own_adapter(tiny_model_dir, concepts, image):
    """Adapters accumulate on a segmenter's UNet (each LoRA concept loads once); a find must run with
    its own adapter alone, as on a fresh segmenter."""
    def seg():
        s = Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", concepts_dir=concepts,
                                      config=FindConfig(draws=2, long_side=64))
        s.set_image(image)
        return s

    alone = seg().find("<lorathing>").scores
    shared = seg()
    shared.find("<loratwo>")  # its adapter stays loaded
    (other,) = {a for names in shared.pipe.get_list_adapters().values() for a in names}
    with torch.no_grad():  # make that adapter large, so that any leak would show
        for name, p in shared.pipe.unet.named_parameters():
            if "lora_B" in name and other in name:
                p.add_(0.5)
    assert np.allclose(shared.find("<lorathing>").scores, alone, atol=1e-5)


def test_presence_does_not_depend_on_the_refinement(tiny_model_dir, image):
    """learn reads a concept's presence_ref without refinement and find compares with refinement on:
    the refinement's grid (here finer than the cross-attention grids) must not change the peak."""
    coarse = [b.name for b in _seg(tiny_model_dir).layer_map.cross if b.factor == 4]  # self is at factor 2
    on, off = (_seg(tiny_model_dir, refine=r, cross_layers=coarse) for r in (True, False))
    assert on._self is not None and on._self[1] not in {f for _, f in on._cross}  # the grids differ
    for s in (on, off):
        s.set_image(image)
    assert on.find("mug").presence == pytest.approx(off.find("mug").presence, rel=1e-6)


def test_concepts_in_segment_labels_and_explain_prompts(tiny_model_dir, concepts, image):
    """A <concept> among segment's labels or in explain's prompt is the learned token (all its
    vectors), as in find, not its letters; an unknown one is an error, not letters either."""
    from personaseg.errors import ConceptError

    seg = Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", concepts_dir=concepts,
                                    config=FindConfig(draws=2, long_side=64))
    seg.set_image(image)
    r = seg.segment(["<twovec>", "cup"])
    assert "<twovec> <twovec>_1, cup" in r.prompt and r.labels == ["<twovec>", "cup"]
    assert r.scores.shape == (3, 37, 90) and r.label_map.shape == (37, 90)
    assert len(seg.positions(r.prompt, ["<twovec> <twovec>_1"])[0]) == 2
    custom = seg.segment(["<twovec>", "cup"], prompt="a <twovec> beside a cup")
    assert custom.prompt == "a <twovec> <twovec>_1 beside a cup"
    e = seg.explain("cup", prompt="a photo of <twovec> and a {}")
    assert e.prompt == "a photo of <twovec> <twovec>_1 and a cup"
    assert e.tokens[3:5] == ["<twovec>", "<twovec>_1"] and len(e.maps) == len(e.tokens)
    # a LoRA concept among the labels switches its adapter on for that pass; two cannot share one
    base = seg.segment(["mug", "cup"]).scores
    seg.segment(["<lorathing>", "cup"])
    assert np.allclose(seg.segment(["mug", "cup"]).scores, base)  # and off again for plain labels
    with pytest.raises(PhraseError, match="2 LoRA concepts"):
        seg.segment(["<lorathing>", "<loratwo>"])
    with pytest.raises(ConceptError, match="unknown concept <nope>"):
        seg.segment(["<nope>", "cup"])


def test_with_config_changes_settings_for_a_block_and_restores_them_on_error(tiny_model_dir, image):
    s = _seg(tiny_model_dir)
    built = s.config
    s.set_image(image)
    calls = s.unet_calls
    plain = s.find("red").mask
    with s.with_config(tau=0.95) as changed:
        assert s.config is changed and changed.tau == 0.95 and built.tau != 0.95
        tight = s.find("red").mask
    assert s.unet_calls == calls + 1  # the cached attention is reused under the changed config
    assert s.config is built and tight.sum() < plain.sum()
    with pytest.raises(RuntimeError):
        with s.with_config(tau=0.1):
            raise RuntimeError("boom")
    assert s.config is built and built.tau != 0.1  # the config the segmenter was built with never changes
