"""TI's class-image contrast: it reads presence as find does, reaches the token, and is checked."""

import pytest
import torch

from personaseg.concepts import LearnConfig, learn
from personaseg.concepts.calibrate import find_spec
from personaseg.concepts.data import load_photos, sample_generator
from personaseg.concepts.trainer import Batch, Trainer
from personaseg.config import FindConfig
from personaseg.errors import ConfigError, InputError
from personaseg.images import collect_images
from personaseg.models import load_pipeline
from personaseg.runtime import make_accelerator
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
    with Trainer(pipe, "<mymug>", cfg, acc, photo_set, photo_set, contrast=find_spec(pipe, card)) as tr:
        t = seg.config.timestep
        clean = seg.noisy_latents / tr.noise_scheduler.alphas_cumprod[t].sqrt()  # add_noise with zero noise undoes this
        b = Batch(tr.find_ids, clean, torch.zeros_like(clean), torch.full((1,), t))
        with torch.no_grad():
            got = tr.contrast_presence(b)
    assert got.shape == (1,) and float(got[0]) == pytest.approx(expected, rel=1e-4)


def test_contrast_loss_reaches_the_token_only(tiny_sd, photos, tiny_cfg):
    pipe, card = load_pipeline(str(tiny_sd), device="cpu")
    cfg = tiny_cfg(contrast_weight=1.0, contrast_ratio=1.0).resolved()
    acc = make_accelerator("no")
    photo_set = load_photos(photos, cfg.resolution)
    with Trainer(pipe, "<mymug>", cfg, acc, photo_set, photo_set, contrast=find_spec(pipe, card)) as tr:
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


def test_contrast_pairs_reads_fewer_of_the_same_samples(tiny_sd, photos, tiny_cfg):
    """contrast_pairs = n takes the first n photos and class images of the full contrast batch; the
    token's start presence is still read on batch_size photos, so both runs aim at the same bar."""
    pipe, card = load_pipeline(str(tiny_sd), device="cpu")
    acc = make_accelerator("no")
    got = {}
    for pairs in (None, 1):
        cfg = tiny_cfg(contrast_weight=1.0, batch_size=2, contrast_pairs=pairs).resolved()
        photo_set = load_photos(photos, cfg.resolution)
        with Trainer(pipe, "<mymug>", cfg, acc, photo_set, photo_set, contrast=find_spec(pipe, card)) as tr:
            got[pairs] = tr.contrast_batch(3).latents, tr.contrast_start
    (full, start), (few, few_start) = got[None], got[1]
    assert full.shape[0] == 4 and few.shape[0] == 2
    assert torch.equal(few, full[[0, 2]]) and few_start == start


def _class_folder(tmp_path, n: int = 6):
    """``n`` random 32-px class images with different mean brightness."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "classes" / "mug"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        a = rng.integers(0, 255, (32, 32, 3)) * (i + 1) / n
        Image.fromarray(a.astype(np.uint8)).save(folder / f"c{i}.png")
    return folder


def test_hard_mining_ranks_class_images_by_presence_and_draws_from_the_top(tiny_sd, photos, tmp_path, tiny_cfg):
    pipe, card = load_pipeline(str(tiny_sd), device="cpu")
    cfg = tiny_cfg(contrast_weight=1.0, contrast_hardest=2).resolved()
    acc = make_accelerator("no")
    classes = load_photos(_class_folder(tmp_path), cfg.resolution)
    with Trainer(pipe, "<mymug>", cfg, acc, load_photos(photos, cfg.resolution), classes,
                 contrast=find_spec(pipe, card)) as tr:
        hardest = tr.mine_hardest()
        # the same images, one at a time, with the noise mining gave each
        single = []
        for k in range(len(classes)):
            g = sample_generator(cfg.seed, k, stream=4)
            lat = tr.class_mean[k, 0] + tr.class_std[k, 0] * torch.randn(tr.class_mean.shape[2:], generator=g)
            noise = torch.randn(tr.class_mean.shape[2:], generator=g)
            b = Batch(tr.find_ids, (lat * tr.scaling)[None], noise[None], torch.full((1,), tr.contrast.timestep))
            with torch.no_grad():
                single.append(float(tr.contrast_presence(b)[0]))
        assert hardest.tolist() == sorted(range(len(classes)), key=lambda k: -single[k])[:2]
        assert len(set(single)) == len(single)  # a ranking, not ties
        before = {tr.class_pick(sample_generator(cfg.seed, s, stream=3)) for s in range(40)}
        tr.train_step(0)  # step 0 mines
        assert torch.equal(tr.hardest, hardest)
        after = {tr.class_pick(sample_generator(cfg.seed, s, stream=3)) for s in range(40)}
    assert len(before) > 2 and after == set(hardest.tolist())


def test_resume_keeps_the_mined_class_images(pipe, photos, tmp_path, tiny_cfg, ctrl_c_after, monkeypatch):
    """Mining at steps 0 and 3 of 4; stopped after step 2, the resumed run must draw from step 0's pick."""
    from safetensors.torch import load_file

    from personaseg.concepts import LearnInterrupted

    cfg = tiny_cfg(steps=4, contrast_weight=1.0, contrast_hardest=2, contrast_mine_every=3, lr=5e-2,
                   class_images=str(_class_folder(tmp_path)))
    straight = learn(photos, "<mymug>", cfg, pipe=pipe, concepts_dir=tmp_path / "a", progress=False)
    ctrl_c_after(2)
    with pytest.raises(LearnInterrupted):
        learn(photos, "<mymug>", cfg, pipe=pipe, concepts_dir=tmp_path / "b", progress=False)
    monkeypatch.undo()
    resumed = learn(photos, "<mymug>", None, pipe=pipe, concepts_dir=tmp_path / "b", resume=True, progress=False)
    a, b = (load_file(str(c.path / "learned_embeds.safetensors")) for c in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.meta["config"]["contrast_hardest"] == 2


@pytest.mark.parametrize("bad", [{"contrast_weight": -1.0}, {"contrast_ratio": 0.0}, {"contrast_ratio": 1.5},
                                 {"method": "lora", "contrast_weight": 1.0}, {"contrast_hardest": -1},
                                 {"contrast_mine_every": 0}, {"contrast_pairs": 0},
                                 {"method": "lora", "contrast_images": "negatives"},
                                 {"method": "lora", "contrast_hardest": 8}, {"method": "lora", "contrast_pairs": 2}])
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

    # a pool of other objects for contrast, mined for the hardest, beside the class images
    card["learn"] |= {"contrast_images": "negatives/classes/*", "contrast_hardest": 2, "contrast_pairs": 1}
    (model / "personaseg.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="no images found in .*negatives") as err:
        learn(photos, "<d>", tiny_cfg(), model=str(model), concepts_dir=tmp_path / "c", progress=False)
    assert "images of other objects" in err.value.hint
    _class_folder(model / "negatives")
    hard = learn(photos, "<d>", tiny_cfg(), model=str(model), concepts_dir=tmp_path / "c", progress=False)
    assert hard.meta["config"]["contrast_images"] == str(model / "negatives" / "classes" / "*")
    assert hard.meta["config"]["contrast_hardest"] == 2 and hard.meta["config"]["contrast_pairs"] == 1
    lora = learn(photos, "<e>", tiny_cfg(method="lora"), model=str(model), concepts_dir=tmp_path / "c",
                 progress=False)
    assert lora.meta["config"]["contrast_images"] is None and lora.meta["config"]["contrast_hardest"] is None
    assert lora.meta["config"]["contrast_pairs"] is None
