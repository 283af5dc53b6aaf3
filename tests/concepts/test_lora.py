"""LoRA DreamBooth: the file diffusers' load_lora_weights reads, the given pipe restored, prior."""

import pytest
import torch
from safetensors.torch import load_file

from personaseg.concepts import learn
from personaseg.concepts.lora import check_text_encoder_lora
from personaseg.concepts.trainer import Trainer
from personaseg.errors import ConfigError

from .conftest import load_tiny


def _probe(pipe, tokenizer, text_encoder, unet):
    """UNet output for a fixed latent and the concept prompt (the end-to-end effect of a concept)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g)
    ids = tokenizer("a photo of a <mymug> mug", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return unet(x, torch.tensor([500]), text_encoder(ids)[0]).sample


@pytest.fixture
def capture_trained(monkeypatch):
    """Record the probe output of the adapted model at the end of training."""
    seen = {}
    original = Trainer.result

    def result(self):
        seen["out"] = _probe(self.pipe, self.tokenizer, self.text_encoder, self.pipe.unet)
        return original(self)

    monkeypatch.setattr(Trainer, "result", result)
    return seen


def _te_lora_reason():
    try:
        check_text_encoder_lora()
    except ConfigError as err:
        return str(err)
    return None


@pytest.mark.parametrize("text_encoder_lora", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(bool(_te_lora_reason()), reason=str(_te_lora_reason()))),
])
def test_lora_round_trips_through_diffusers(pipe, tiny_sd, photos, store_dir, tiny_cfg, capture_trained,
                                            text_encoder_lora):
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    te_keys = set(pipe.text_encoder.state_dict())
    cfg = tiny_cfg(method="lora", steps=2, lr=1e-2, lora_train_text_encoder=text_encoder_lora)
    concept = learn(photos, "<mymug>", cfg, pipe=pipe, concepts_dir=store_dir, progress=False)

    # the given pipe is as it was: no adapter left, same weights, same modules
    unet_after = pipe.unet.state_dict()
    assert unet_after.keys() == unet_before.keys()
    assert all(torch.equal(unet_after[k], unet_before[k]) for k in unet_before)
    assert not getattr(pipe.unet, "peft_config", None)
    assert set(pipe.text_encoder.state_dict()) == te_keys

    # the file is diffusers' LoRA format
    sd = load_file(str(concept.path / "pytorch_lora_weights.safetensors"))
    assert any(k.startswith("unet.") and "to_q" in k for k in sd)
    assert any(k.startswith("text_encoder.") for k in sd) == text_encoder_lora
    assert (concept.path / "learned_embeds.safetensors").exists()

    # a fresh pipeline + Concept.apply (load_textual_inversion + load_lora_weights) = the trained model
    fresh = load_tiny(tiny_sd)
    assert concept.apply(fresh) == ["<mymug>"]
    assert "mymug" in fresh.get_list_adapters()["unet"]
    out = _probe(fresh, fresh.tokenizer, fresh.text_encoder, fresh.unet)
    torch.testing.assert_close(out, capture_trained["out"], rtol=1e-4, atol=1e-5)
    assert concept.apply(fresh) == ["<mymug>"]  # idempotent


def test_lora_changes_the_model(pipe, tiny_sd, photos, store_dir, tiny_cfg, capture_trained):
    fresh = load_tiny(tiny_sd)
    fresh.load_textual_inversion({"<mymug>": torch.zeros(1, 32)})
    cfg = tiny_cfg(method="lora", steps=2, lr=1e-2, lora_train_token=False)
    concept = learn(photos, "<mymug>", cfg, pipe=pipe, concepts_dir=store_dir, progress=False)
    init = concept.embeddings()  # untrained: the class word's embedding
    mug = pipe.tokenizer("mug", add_special_tokens=False).input_ids
    assert torch.allclose(init[0], pipe.text_encoder.get_input_embeddings().weight[mug].mean(0))
    plain = load_tiny(tiny_sd)
    plain.load_textual_inversion({"<mymug>": init})
    base = _probe(plain, plain.tokenizer, plain.text_encoder, plain.unet)
    assert not torch.allclose(base, capture_trained["out"])  # LoRA weights moved


def test_prior_preservation_generates_and_caches_class_images(pipe, photos, store_dir, tiny_cfg):
    cfg = tiny_cfg(method="lora", steps=1, prior_preservation=True, num_class_images=2, class_image_steps=2)
    concept = learn(photos, "<mymug>", cfg, pipe=pipe, concepts_dir=store_dir, progress=False)
    cached = list((store_dir / ".class-images").glob("*/class_*.png"))
    assert len(cached) == 2 and concept.meta["config"]["prior_preservation"] is True


@pytest.mark.skipif(not _te_lora_reason(), reason="peft is recent enough here")
def test_text_encoder_lora_with_old_peft_is_one_clear_error(pipe, photos, store_dir, tiny_cfg):
    with pytest.raises(ConfigError, match="pip install -U peft"):
        learn(photos, "<mymug>", tiny_cfg(method="lora", lora_train_text_encoder=True), pipe=pipe,
              concepts_dir=store_dir, progress=False)


def test_adapter_on_a_unet_with_an_adapter_is_quiet_and_restores_it(pipe):
    """Learning a LoRA concept on a pipe that already carries one: no peft "Already found a
    peft_config" warning (a second adapter is by design), and the first comes back active."""
    import warnings

    from personaseg.concepts.lora import UNET_TARGETS, UnetAdapter, lora_config

    pipe.unet.add_adapter(lora_config(2, UNET_TARGETS), adapter_name="first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            adapter = UnetAdapter(pipe.unet, "second", 2)
            assert pipe.unet.active_adapters() == ["second"]
            adapter.remove()
        assert list(pipe.unet.peft_config) == ["first"] and pipe.unet.active_adapters() == ["first"]
    finally:
        pipe.unet.unload_lora()
