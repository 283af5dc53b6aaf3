"""TI's class-image contrast: it reads presence as find does, reaches the token, and is checked."""

import pytest
import torch

from personaseg.concepts import LearnConfig, learn
from personaseg.concepts.data import load_photos
from personaseg.concepts.train import _contrast_spec, make_accelerator
from personaseg.concepts.trainer import Batch, Trainer
from personaseg.config import FindConfig
from personaseg.errors import ConfigError, InputError
from personaseg.images import collect_images
from personaseg.models import load_pipeline
from personaseg.segmenter import Segmenter


def test_contrast_presence_is_finds_presence(tiny_sd, photos, tiny_cfg):
    """At its start the token is the class word's vector, so on find's own noisy latent its
    presence must be find's presence of the class word, to float precision."""
    pipe, card = load_pipeline(str(tiny_sd), device="cpu")
    seg = Segmenter(pipe, card, FindConfig(refine=False, draws=1))
    seg.set_image(collect_images([photos])[0][0])
    expected = seg.find("mug").presence
    cfg = tiny_cfg(contrast_weight=1.0).resolved()
    acc = make_accelerator("no")
    photo_set = load_photos(photos, cfg.resolution)
    with Trainer(pipe, "<mymug>", cfg, acc, photo_set, photo_set, contrast=_contrast_spec(pipe, card, acc)) as tr:
        t = seg.config.timestep
        clean = seg._noisy / tr.noise_scheduler.alphas_cumprod[t].sqrt()  # add_noise with zero noise undoes this
        b = Batch(tr.find_ids, clean, torch.zeros_like(clean), torch.full((1,), t))
        with torch.no_grad():
            got = tr.contrast_presence(b)
    assert got.shape == (1,) and float(got[0]) == pytest.approx(expected, rel=1e-4)


def test_contrast_loss_reaches_the_token_only(tiny_sd, photos, tiny_cfg):
    pipe, card = load_pipeline(str(tiny_sd), device="cpu")
    cfg = tiny_cfg(contrast_weight=1.0, contrast_ratio=1.0).resolved()
    acc = make_accelerator("no")
    photo_set = load_photos(photos, cfg.resolution)
    with Trainer(pipe, "<mymug>", cfg, acc, photo_set, photo_set, contrast=_contrast_spec(pipe, card, acc)) as tr:
        b = tr.contrast_batch(0)
        assert b.latents.shape[0] == 2 * cfg.batch_size and (b.timesteps == 150).all()
        loss = tr.contrast_loss(b)
        loss.backward()
        grads = {n: p.grad for n, p in tr.named_trainable().items()}
    # photos against themselves with ratio 1: positive wherever a class image outscores the mean
    assert loss > 0
    (name, grad), = grads.items()
    assert name.endswith("token_embedding.rows") and grad.abs().sum() > 0


def test_learn_with_contrast_uses_class_images_per_class_word(tiny_sd, photos, tmp_path, tiny_cfg):
    folder = tmp_path / "classes" / "mug"
    folder.mkdir(parents=True)
    for p in collect_images([photos])[0]:
        (folder / p.name).write_bytes(p.read_bytes())
    cfg = tiny_cfg(contrast_weight=1.0, class_images=str(tmp_path / "classes" / "{class}"))
    concept = learn(photos, "<mymug>", cfg, model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)
    assert concept.meta["config"]["contrast_weight"] == 1.0
    with pytest.raises(InputError, match="no images found in .*classes/cup") as err:
        learn(photos, "<other>", tiny_cfg(contrast_weight=1.0, class_word="cup",
                                          class_images=str(tmp_path / "classes" / "{class}")),
              model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)
    assert "other objects of its class, not yours" in err.value.hint


@pytest.mark.parametrize("bad", [{"contrast_weight": -1.0}, {"contrast_ratio": 0.0}, {"contrast_ratio": 1.5},
                                 {"method": "lora", "contrast_weight": 1.0}])
def test_bad_contrast_settings(bad):
    with pytest.raises(ConfigError):
        LearnConfig(**bad)


def test_model_card_turns_contrast_on_with_class_images_in_its_folder(tiny_sd, photos, tmp_path, tiny_cfg):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    shutil.copytree(photos, model / "class-images" / "mug")
    card = json.loads((model / "personaseg.json").read_text())
    card["learn"] = {"contrast_weight": 0.5, "class_images": "class-images/{class}"}
    (model / "personaseg.json").write_text(json.dumps(card))
    ti = learn(photos, "<a>", tiny_cfg(), model=str(model), concepts_dir=tmp_path / "c", progress=False)
    assert ti.meta["config"]["contrast_weight"] == 0.5
    assert ti.meta["config"]["class_images"] == str(model / "class-images" / "{class}")
    # a LoRA run on the same model is not refused for the card's TI setting
    lora = learn(photos, "<b>", tiny_cfg(method="lora"), model=str(model), concepts_dir=tmp_path / "c",
                 progress=False)
    assert lora.meta["config"]["contrast_weight"] is None
