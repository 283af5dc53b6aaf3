"""Textual Inversion: token names, trainable rows only, the embedding file through diffusers."""

import warnings

import pytest
import torch

from personaseg.concepts import LearnWarning, learn
from personaseg.concepts.data import TI_TEMPLATES
from personaseg.concepts.textual_inversion import TokenRows, class_word_vector, parse_token, sub_tokens
from personaseg.concepts.trainer import Trainer
from personaseg.errors import ConceptError
from personaseg.segmenter import PresenceWarning

from .conftest import load_tiny


def test_parse_token():
    assert parse_token("<mymug>") == ("mymug", "<mymug>")
    with pytest.warns(UserWarning, match="<mymug>"):
        assert parse_token("mymug") == ("mymug", "<mymug>")
    with pytest.raises(ConceptError, match="space.*<my-mug>"):
        parse_token("<my mug>")
    for bad in ("", "<>", "<a/b>", "<../x>"):
        with pytest.raises(ConceptError):
            parse_token(bad)
    assert sub_tokens("<a>", 3) == ["<a>", "<a>_1", "<a>_2"]


def test_token_rows_train_only_their_rows():
    base = torch.nn.Embedding(10, 4)
    base.weight.requires_grad_(False)
    rows = TokenRows(base, [10, 11], torch.zeros(2, 4))
    out = rows(torch.tensor([[1, 10, 11, 3]]))  # (1, 4 tokens, 4)
    assert torch.equal(out[0, 0], base.weight[1]) and torch.equal(out[0, 1], torch.zeros(4))
    (out * torch.arange(4.0)).sum().backward()
    assert rows.rows.grad.abs().sum() > 0 and base.weight.grad is None


def test_multi_token_class_word_is_averaged(pipe):
    emb = pipe.text_encoder.get_input_embeddings()
    ids = pipe.tokenizer("red mug", add_special_tokens=False).input_ids
    assert len(ids) == 2
    v = class_word_vector(pipe.tokenizer, emb, "red mug")
    assert torch.allclose(v, emb.weight[ids].mean(0))


def test_only_new_rows_change_and_diffusers_loads_the_file(pipe, tiny_sd, photos, store_dir, tiny_cfg):
    te_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    n_tokens = len(pipe.tokenizer)
    concept = learn(photos, "<mymug>", tiny_cfg(vectors=2, steps=3), pipe=pipe, concepts_dir=store_dir, progress=False)

    # the given pipeline is back as it was: same tokenizer, embedding module and weights, bit for bit
    assert len(pipe.tokenizer) == n_tokens and "<mymug>" not in pipe.tokenizer.get_vocab()
    assert isinstance(pipe.text_encoder.get_input_embeddings(), torch.nn.Embedding)
    te_after, unet_after = pipe.text_encoder.state_dict(), pipe.unet.state_dict()
    assert te_after.keys() == te_before.keys() and unet_after.keys() == unet_before.keys()
    assert all(torch.equal(te_after[k], te_before[k]) for k in te_before)
    assert all(torch.equal(unet_after[k], unet_before[k]) for k in unet_before)
    assert not any(p.requires_grad is False for p in pipe.unet.parameters())  # flags restored

    # both vectors trained away from the class-word initialisation
    rows = concept.embeddings()
    init = class_word_vector(pipe.tokenizer, pipe.text_encoder.get_input_embeddings(), "mug")
    assert rows.shape == (2, 32)
    assert all(not torch.allclose(rows[k], init) for k in range(2))

    # a fresh pipeline loads the file with diffusers, unchanged; every other row is bit-identical
    fresh = load_tiny(tiny_sd)
    w0 = fresh.text_encoder.get_input_embeddings().weight.detach().clone()
    fresh.load_textual_inversion(str(concept.path / "learned_embeds.safetensors"))
    w1 = fresh.text_encoder.get_input_embeddings().weight.detach()
    ids = fresh.tokenizer.convert_tokens_to_ids(["<mymug>", "<mymug>_1"])
    assert torch.equal(w1[: w0.shape[0]], w0)
    assert torch.equal(w1[ids], rows)
    assert fresh.maybe_convert_prompt("a <mymug> mug", fresh.tokenizer) == "a <mymug> <mymug>_1 mug"


def test_token_already_in_tokenizer_is_refused(pipe, photos, store_dir, tiny_cfg):
    pipe.load_textual_inversion({"<taken>": torch.zeros(1, 32)})
    with pytest.raises(ConceptError, match="already in the model's tokenizer"):
        learn(photos, "<taken>", tiny_cfg(), pipe=pipe, concepts_dir=store_dir, progress=False)
    assert isinstance(pipe.text_encoder.get_input_embeddings(), torch.nn.Embedding)


def test_bare_token_one_photo_and_multiword_class(pipe, photos, store_dir, tiny_cfg):
    for p in sorted(photos.iterdir())[1:]:
        p.unlink()
    with pytest.warns(LearnWarning) as seen:
        concept = learn(photos, "solo", tiny_cfg(steps=1, class_word="red mug"), pipe=pipe,
                        concepts_dir=store_dir, progress=False)
    messages = " | ".join(str(w.message) for w in seen)
    assert "only one photo" in messages and "written as <solo>" in messages
    assert concept.token == "<solo>" and concept.class_word == "red mug"
    assert concept.meta["photos"][0]["file"] == "mug0.png"


def test_ti_on_a_pipe_with_a_lora_concept_trains_on_the_base_model(pipe, tiny_sd, photos, store_dir, tiny_cfg):
    lora = learn(photos, "<lo>", tiny_cfg(method="lora", steps=1, lr=1e-2), pipe=pipe, concepts_dir=store_dir,
                 progress=False)
    lora.apply(pipe)
    a = learn(photos, "<ti>", tiny_cfg(steps=2), pipe=pipe, concepts_dir=store_dir, progress=False)
    b = learn(photos, "<ti2>", tiny_cfg(steps=2), pipe=load_tiny(tiny_sd), concepts_dir=store_dir, progress=False)
    assert torch.equal(a.embeddings(), b.embeddings())  # the loaded LoRA was off while learning
    from peft.tuners.tuners_utils import BaseTunerLayer
    assert all(not m.disable_adapters for m in pipe.unet.modules() if isinstance(m, BaseTunerLayer))


def test_templates_come_from_the_model_card_unless_given(tiny_sd, photos, tmp_path, tiny_cfg, monkeypatch):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    (model / "personaseg.json").write_text(json.dumps({"find": {"long_side": 64},
                                                       "learn": {"templates": ["a {}", "the {} mug"]}}))
    seen = []
    original = Trainer._ids
    monkeypatch.setattr(Trainer, "_ids", lambda self, texts: seen.append(texts) or original(self, texts))

    concept = learn(photos, "<card>", tiny_cfg(), model=str(model), concepts_dir=tmp_path / "c1", progress=False)
    assert seen[0] == ["a <card>", "the <card> mug"]
    assert concept.meta["config"]["templates"] == ["a {}", "the {} mug"]

    seen.clear()
    learn(photos, "<mine>", tiny_cfg(templates=["my {}"]), model=str(model), concepts_dir=tmp_path / "c2",
          progress=False)
    assert seen[0] == ["my <mine>"]

    seen.clear()
    learn(photos, "<plain>", tiny_cfg(), model=str(tiny_sd), concepts_dir=tmp_path / "c3", progress=False)
    assert len(seen[0]) == len(TI_TEMPLATES) and seen[0][0] == "a photo of a <plain>"


def test_learn_measures_presence_on_its_photos_and_find_compares(tiny_sd, photos, tmp_path, tiny_cfg):
    from personaseg.images import collect_images
    from personaseg.segmenter import Segmenter

    model = tiny_sd  # its card sets find's long side to 64 px
    concept = learn(photos, "<ref>", tiny_cfg(), model=str(model), concepts_dir=tmp_path / "c", progress=False)
    ref = concept.meta["presence_ref"]
    assert ref > 0
    # find with the same (default) settings: the photos' relative presences average to 1
    seg = Segmenter.from_pretrained(str(model), device="cpu", concepts_dir=tmp_path / "c")
    rel = []
    for path in collect_images([photos])[0]:
        seg.set_image(path)
        r = seg.find("<ref>")
        rel.append(r.relative_presence)
        assert r.relative_presence == pytest.approx(r.presence / ref) and r.found
    assert sum(rel) / len(rel) == pytest.approx(1.0, abs=1e-4)
    assert seg.find("mug").relative_presence is None  # a plain phrase has no reference
    strict = Segmenter.from_pretrained(str(model), device="cpu", concepts_dir=tmp_path / "c",
                                       min_relative_presence=2.0)
    strict.set_image(collect_images([photos])[0][0])
    r = strict.find("<ref>")
    assert not r.found and not r.mask.any()
    assert strict.find("mug").found  # the rule is for concepts only
    assert concept.meta["presence_ref_at"] == seg.presence_settings(r.prompt)

    # presence read at another timestep has another scale: the reference is not applied, one warning
    other = Segmenter.from_pretrained(str(model), device="cpu", concepts_dir=tmp_path / "c",
                                      min_relative_presence=2.0, timestep=300)
    other.set_image(collect_images([photos])[0][0])
    with pytest.warns(PresenceWarning, match=r"<ref>.*\(timestep\)"):
        r = other.find("<ref>")
    assert r.relative_presence is None and r.found
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.find("<ref>")  # warned once per concept
        quiet = Segmenter.from_pretrained(str(model), device="cpu", concepts_dir=tmp_path / "c", timestep=300)
        quiet.set_image(collect_images([photos])[0][0])
        assert quiet.find("<ref>").relative_presence is None  # no rule set: no warning either


def test_learn_compares_the_token_with_its_class_word_and_warns_when_dead(tiny_sd, photos, tmp_path, tiny_cfg,
                                                                          monkeypatch):
    """A token still at its class word's embedding (lr ~0) draws the same attention as the word:
    no warning. Above WEAK_TOKEN_RATIO x the class word's presence it is fine; below it, one warning."""
    from personaseg.concepts import calibrate

    cfg = tiny_cfg(steps=1, lr=1e-9, templates=["a photo of a {}"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", LearnWarning)
        concept = learn(photos, "<same>", cfg, model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)
    ref, class_ref = concept.meta["presence_ref"], concept.meta["class_presence_ref"]
    assert class_ref > 0 and ref == pytest.approx(class_ref, rel=0.05)
    other = learn(photos, "<other>", tiny_cfg(steps=1, lr=1e-9, templates=["a photo of a {}"], init_word="thing"),
                  model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)
    assert other.meta["class_presence_ref"] == pytest.approx(class_ref, rel=1e-4)  # the word, not the token
    monkeypatch.setattr(calibrate, "WEAK_TOKEN_RATIO", 2.0)  # the same token now counts as dead
    with pytest.warns(LearnWarning, match=r"<weak> barely draws attention .* for the class word 'mug'.*--init-word"):
        learn(photos, "<weak>", cfg, model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)


@pytest.mark.parametrize(("class_word", "init_word", "expected"), [("mug", None, "mug"), ("mug", "thing", "thing"),
                                                                  (None, None, "object")])
def test_vectors_start_at_the_init_word_else_the_class_word(pipe, photos, store_dir, tiny_cfg,
                                                            class_word, init_word, expected):
    concept = learn(photos, "<init>", tiny_cfg(steps=1, lr=1e-9, vectors=2, class_word=class_word, init_word=init_word),
                    pipe=pipe, concepts_dir=store_dir, progress=False)  # lr 1e-9: the rows stay where they started
    emb = pipe.text_encoder.get_input_embeddings()
    rows = concept.embeddings()
    for word in ("mug", "thing", "object"):
        start = class_word_vector(pipe.tokenizer, emb, word).expand(2, -1)
        assert torch.allclose(rows, start, atol=1e-6) == (word == expected)
    assert concept.class_word == class_word


def test_training_size_comes_from_the_model_card_unless_given(tiny_sd, photos, tmp_path, tiny_cfg, monkeypatch):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    (model / "personaseg.json").write_text(json.dumps({"find": {"long_side": 64}, "learn": {"resolution": 24}}))
    sizes = []
    original = Trainer.__init__

    def spy(self, pipe, token, cfg, acc, photo_set, *args, **kw):
        sizes.append(tuple(photo_set.pixels.shape[-2:]))
        original(self, pipe, token, cfg, acc, photo_set, *args, **kw)

    monkeypatch.setattr(Trainer, "__init__", spy)
    card = learn(photos, "<card>", tiny_cfg(resolution=None), model=str(model), concepts_dir=tmp_path / "c",
                 progress=False)
    mine = learn(photos, "<mine>", tiny_cfg(resolution=32), model=str(model), concepts_dir=tmp_path / "c",
                 progress=False)
    assert sizes == [(24, 24), (32, 32)]
    assert card.meta["config"]["resolution"] == 24 and mine.meta["config"]["resolution"] == 32
    from personaseg.concepts import LearnConfig

    assert LearnConfig().resolution is None  # SD's 512 is applied when no card sets a size


def test_outline_with_class_is_the_geometric_mean_of_token_and_class_word(tiny_sd, photos, tmp_path, tiny_cfg):
    import numpy as np
    from PIL import Image

    from personaseg.config import FindConfig
    from personaseg.masks import strongest_region
    from personaseg.segmenter import Segmenter

    learn(photos, "<wc>", tiny_cfg(), model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)
    rng = np.random.default_rng(5)
    noise = Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8"))
    own, both, every = (Segmenter.from_pretrained(str(tiny_sd), device="cpu", concepts_dir=tmp_path / "c",
                                                  config=FindConfig(outline=o, keep=k))
                        for o, k in (("token", "auto"), ("with-class", "auto"), ("with-class", "all")))
    for s in (own, both, every):
        s.set_image(noise)
    a = own.find("<wc>")
    calls = both.unet_calls
    b = both.find("<wc>")
    assert both.unet_calls == calls + 2  # the token's prompt, then the class word's
    word = both.find("mug")  # the class word's own find reuses that pass
    assert both.unet_calls == calls + 2
    assert (b.presence, b.found) == (a.presence, a.found)  # the token's own peak, either way
    # read with the class word too, which the reference (learned with this card's outline, "token") was not
    assert a.joint_presence is None and a.relative_presence is not None
    assert 0 < b.joint_presence <= (b.presence * word.presence) ** 0.5 and b.relative_presence is None
    # high only where both maps are (bilinear upsampling comes after the mean: close, not equal)
    expected = np.sqrt(a.scores * word.scores)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert np.corrcoef(b.scores.ravel(), expected.ravel())[0, 1] > 0.95
    assert not np.allclose(b.scores, a.scores, atol=0.05) and not np.allclose(b.scores, word.scores, atol=0.05)
    # one object: of the map's regions, the one holding the token's (not the mean's) highest score
    regions = every.find("<wc>").mask
    assert np.array_equal(b.mask, strongest_region(regions, a.scores))
    assert own.config.outline == "token"  # the default, with no model card saying otherwise


def test_outline_with_class_without_a_class_word_warns_once_and_draws_the_token(tiny_sd, photos, tmp_path, tiny_cfg):
    import numpy as np
    from PIL import Image

    from personaseg.config import FindConfig
    from personaseg.errors import PersonasegWarning
    from personaseg.segmenter import Segmenter

    learn(photos, "<bare>", tiny_cfg(class_word=None, init_word="cup"), model=str(tiny_sd),
          concepts_dir=tmp_path / "c", progress=False)
    noise = Image.fromarray((np.random.default_rng(2).random((64, 64, 3)) * 255).astype("uint8"))
    own, both = (Segmenter.from_pretrained(str(tiny_sd), device="cpu", concepts_dir=tmp_path / "c",
                                           config=FindConfig(outline=o)) for o in ("token", "with-class"))
    for s in (own, both):
        s.set_image(noise)
    with pytest.warns(PersonasegWarning, match="no class word") as caught:
        b = both.find("<bare>")
        both.find("<bare>")
    assert sum("no class word" in str(w.message) for w in caught) == 1
    a = own.find("<bare>")
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.scores, b.scores)
