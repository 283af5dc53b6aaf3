"""The toy model: a tiny training run writes a loadable SD folder; the shipped model samples."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personaseg.toyworld import TOY_MODEL_DIR
from personaseg.toyworld.config import ToyTrainConfig, toy_train_config
from personaseg.errors import ConfigError

TINY = dict(vae_channels=[16, 16], unet_channels=[16, 16, 16], unet_heads=[1, 1, 1], text_hidden=16,
            text_layers=1, text_heads=1)


def _load(folder):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)


def _check_layer_map(pipe, folder):
    card = json.loads((folder / "personaseg.json").read_text())
    names = dict(pipe.unet.named_modules())
    for block in card["layer_map"]["cross"] + [card["layer_map"]["self"]]:
        assert type(names[block]).__name__ == "Transformer2DModel", block
    assert card["find"]["long_side"] == 64


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from personaseg.toyworld.train import train

    out = tmp_path_factory.mktemp("toy") / "model"
    cfg = ToyTrainConfig(n_scenes=8, vae_steps=2, vae_batch=2, steps=3, batch=2, warmup=1, log_every=1,
                         snapshot_every=2, model=TINY)
    return out, train(cfg, out, log=lambda s: None)


def test_tiny_training_writes_a_pipeline(tiny_model):
    out, report = tiny_model
    assert report.steps == 3 and len(report.losses) == 3 and np.isfinite(report.final_loss)
    pipe = _load(out)
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.float32  # fp16 on disk, fp32 loaded
    assert pipe.vae.config.scaling_factor == pytest.approx(report.scaling_factor)
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.scheduler.config.num_train_timesteps == 1000
    _check_layer_map(pipe, out)
    image = pipe("a red circle", num_inference_steps=1, height=64, width=64, output_type="np").images
    assert image.shape == (1, 64, 64, 3)
    log = json.loads((out / "train_log.json").read_text())
    assert log["config"]["steps"] == 3
    # the card's TI contrast reads the class images shipped beside the weights
    from personaseg.models import read_card
    from personaseg.toyworld.scenes import SHAPES

    learn = read_card(str(out)).learn_defaults
    assert learn["contrast_weight"] > 0
    for shape in SHAPES:
        assert len(list(Path(learn["class_images"].replace("{class}", shape)).glob("*.png"))) == 32


def test_training_writes_the_shipped_card(tiny_model):
    """Retraining the toy model gives it the card shipped with it, byte for byte (issue 20: the written
    card lacked contrast_pairs, which had been added to the shipped one by hand)."""
    out, _ = tiny_model
    assert (out / "personaseg.json").read_text() == (TOY_MODEL_DIR / "personaseg.json").read_text()


def test_recipe_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text("stepz = 3\n")
    with pytest.raises(ConfigError, match="stepz"):
        toy_train_config(bad)


@pytest.mark.parametrize("line, match", [
    ('shape_loss = "x"', "shape_loss='x' .* is not a number"),
    ("batch = true", "batch=True .* is not a number"),
    ("look_loss = -1", "look_loss=-1 must be >= 0"),
    ("p_drop_colour = 1.5", "p_drop_colour=1.5 out of range"),
    ('mixed_precision = "fp16"', "mixed_precision='fp16' is not no or bf16"),
    ("t_min = 500\nt_max = 500", "t_min=500, t_max=500: need 0 <= t_min < t_max <= 1000"),
    ("t_max = 1001", "need 0 <= t_min < t_max <= 1000"),
])
def test_recipe_rejects_bad_values_before_training(tmp_path, line, match):
    bad = tmp_path / "r.toml"
    bad.write_text(line + "\n")
    with pytest.raises(ConfigError, match=match):
        toy_train_config(bad)
    assert toy_train_config(None, shape_loss=1).shape_loss == 1  # an integer is a fine float


@pytest.mark.parametrize("recipe", ["toyworld.toml", "toyworld-shape.toml", "toyworld-colour.toml", "toyworld-colour-finetune.toml",
                                    "toyworld-layout-finetune.toml", "toyworld-longer-finetune.toml", "toyworld-vpred.toml"])
def test_shipped_recipes_parse(recipe):
    from pathlib import Path

    cfg = toy_train_config(Path(__file__).parents[2] / "recipes" / recipe)
    assert cfg.steps >= 1 and cfg.model_config().image_size == 64


shipped = pytest.mark.skipif(
    not (TOY_MODEL_DIR / "model_index.json").exists(),
    reason=f"no shipped toy weights in {TOY_MODEL_DIR} (train with `personaseg toyworld train`)",
)


@shipped
def test_shipped_model_loads_and_samples():
    pipe = _load(TOY_MODEL_DIR)
    _check_layer_map(pipe, TOY_MODEL_DIR)
    gen = torch.Generator().manual_seed(0)
    image = pipe("a red circle", num_inference_steps=1, generator=gen, output_type="np").images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


@shipped
def test_shipped_model_takes_textual_inversion():
    pipe = _load(TOY_MODEL_DIR)
    dim = pipe.text_encoder.config.hidden_size
    pipe.load_textual_inversion(torch.randn(2, dim), token="<mine>", tokenizer=pipe.tokenizer,
                                text_encoder=pipe.text_encoder)
    ids = pipe.tokenizer.convert_tokens_to_ids(["<mine>", "<mine>_1"])
    assert pipe.tokenizer.unk_token_id not in ids


def test_resume_accepts_a_state_saved_before_a_field_existed(tmp_path):
    """A state saved by an older personaseg lacks newer fields: they count at their defaults, and a
    real difference is still refused."""
    from dataclasses import asdict

    from personaseg.toyworld import resume

    cfg = ToyTrainConfig(steps=4, model=TINY)
    old = asdict(cfg)
    del old["mixed_precision"]  # added on 2026-11-26
    resume.state_dir(tmp_path).mkdir(parents=True)
    (resume.state_dir(tmp_path) / "state.json").write_text(json.dumps({"config": old, "step": 2}))
    assert resume.load_meta(tmp_path, cfg)["step"] == 2
    with pytest.raises(ConfigError, match="saved by another recipe"):
        resume.load_meta(tmp_path, ToyTrainConfig(steps=4, model=TINY, mixed_precision="bf16"))
    with pytest.raises(ConfigError, match="saved by another recipe"):
        resume.load_meta(tmp_path, ToyTrainConfig(steps=5, model=TINY))


def test_resume_continues_where_a_run_stopped(tmp_path):
    """A run stopped after its step-2 state and resumed ends like one uninterrupted run."""
    from personaseg.toyworld import resume
    from personaseg.toyworld.train import train

    cfg = ToyTrainConfig(n_scenes=8, vae_steps=2, vae_batch=2, steps=4, batch=2, warmup=1, log_every=1,
                         snapshot_every=2, threads=1, model=TINY, ground_loss=0.1, pad_loss=1.0, shape_loss=0.3, look_loss=0.3)
    full = train(cfg, tmp_path / "full", log=lambda s: None)
    assert not resume.state_dir(tmp_path / "full").exists()  # cleared after a finished run
    # fake a kill after step 2: keep the state of a run that saved at step 2
    cut = tmp_path / "cut"
    cfg2 = ToyTrainConfig(**{**cfg.__dict__, "steps": 4})
    import personaseg.toyworld.resume as r

    saved = {}
    real_clear = r.clear
    r.clear = lambda out: saved.setdefault("x", None)  # keep the state this time
    try:
        train(cfg2, cut, log=lambda s: None)
    finally:
        r.clear = real_clear
    meta = json.loads((resume.state_dir(cut) / "state.json").read_text())
    assert meta["step"] == 2
    again = train(cfg2, cut, log=lambda s: None, resume_run=True)
    assert [s for s, _ in again.losses] == [1, 2, 3, 4]
    np.testing.assert_allclose([l for _, l in again.losses], [l for _, l in full.losses], rtol=1e-4)


@pytest.mark.parametrize("precision, dtype", [("no", torch.float32), ("bf16", torch.bfloat16)])
def test_mixed_precision_autocasts_the_forward_passes(monkeypatch, tmp_path, precision, dtype):
    """bf16 runs the VAE's and the UNet's convolutions in bf16 (every loss term on), keeps the
    trainable weights fp32 and the losses finite; "no" stays fp32."""
    from personaseg.toyworld import train as train_mod

    seen = {}

    def watched(build, name):
        def wrapper(*args, **kw):
            module = build(*args, **kw)
            first_conv = module.conv_in if name == "unet" else module.encoder.conv_in
            first_conv.register_forward_hook(lambda m, i, o: seen.setdefault(name, set()).add(o.dtype))
            return module
        return wrapper

    monkeypatch.setattr(train_mod, "build_unet", watched(train_mod.build_unet, "unet"))
    monkeypatch.setattr(train_mod, "build_vae", watched(train_mod.build_vae, "vae"))
    cfg = ToyTrainConfig(n_scenes=8, vae_steps=2, vae_batch=2, steps=2, batch=4, warmup=1, log_every=1,
                         snapshot_every=0, model=TINY, ground_loss=0.1, pad_loss=1.0, shape_loss=0.3, look_loss=0.3,
                         mixed_precision=precision)
    report = train_mod.train(cfg, tmp_path / "m", log=lambda s: None)
    assert seen["vae"] >= {dtype} and seen["unet"] == {dtype}  # the VAE also encodes the latents in fp32
    assert np.isfinite([l for _, l in report.losses]).all() and np.isfinite(report.vae_loss)
    pipe = _load(tmp_path / "m")
    assert pipe.unet.dtype == torch.float32


def test_denoiser_timesteps_stay_in_t_min_t_max(tiny_model, tmp_path, monkeypatch):
    """A fine-tune with ``t_min``/``t_max`` trains only on those timesteps."""
    from diffusers import DDPMScheduler

    from personaseg.toyworld.train import train

    seen, add_noise = [], DDPMScheduler.add_noise

    def spy(self, x, noise, t):
        seen.append(t.clone())
        return add_noise(self, x, noise, t)

    monkeypatch.setattr(DDPMScheduler, "add_noise", spy)
    base, _ = tiny_model
    cfg = ToyTrainConfig(n_scenes=8, steps=3, batch=8, warmup=1, log_every=1, snapshot_every=0, model=TINY,
                         init=str(base), t_min=700, t_max=710)
    train(cfg, tmp_path / "tuned", log=lambda s: None)
    t = torch.cat(seen)
    assert len(t) == 24 and t.min() >= 700 and t.max() < 710 and len(t.unique()) > 1


def test_init_fine_tunes_a_trained_model(tiny_model, tmp_path):
    """`init` starts from a trained folder: same VAE (no VAE stage), UNet starting from its weights."""
    from personaseg.toyworld.train import train

    base, _ = tiny_model
    cfg = ToyTrainConfig(n_scenes=8, steps=1, batch=2, warmup=1, log_every=1, snapshot_every=0, lr=1e-12,
                         model=TINY, init=str(base), p_drop_colour=1.0, vae_steps=10**6)  # a VAE stage would never end
    report = train(cfg, tmp_path / "tuned", log=lambda s: None)
    a, b = _load(base), _load(tmp_path / "tuned")
    assert report.scaling_factor == pytest.approx(a.vae.config.scaling_factor)
    for x, y in [(a.vae, b.vae), (a.unet, b.unet), (a.text_encoder, b.text_encoder)]:
        for (name, p), q in zip(x.state_dict().items(), y.state_dict().values()):
            torch.testing.assert_close(p, q, atol=1e-3, rtol=1e-3, msg=name)  # lr ~0: unchanged (fp16 on disk)
    with pytest.raises(Exception, match="not a diffusers folder"):
        train(ToyTrainConfig(**{**cfg.__dict__, "init": str(tmp_path)}), tmp_path / "x", log=lambda s: None)


def test_v_prediction_trains_on_velocity_and_ships_its_scheduler(tmp_path, monkeypatch):
    """``prediction_type = "v_prediction"``: the loss targets the velocity and the saved scheduler
    says so, so diffusers' pipelines and our learn loss read the UNet the way it was trained."""
    from diffusers import DDPMScheduler

    from personaseg.toyworld.train import train

    calls, get_velocity = [], DDPMScheduler.get_velocity

    def spy(self, x, noise, t):
        calls.append(self.config.prediction_type)
        return get_velocity(self, x, noise, t)

    monkeypatch.setattr(DDPMScheduler, "get_velocity", spy)
    cfg = ToyTrainConfig(n_scenes=8, vae_steps=2, vae_batch=2, steps=2, batch=2, warmup=1, log_every=1,
                         snapshot_every=0, model=TINY, prediction_type="v_prediction")
    train(cfg, tmp_path / "v", log=lambda s: None)
    assert calls == ["v_prediction"] * 2
    pipe = _load(tmp_path / "v")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe("a red circle", num_inference_steps=2, height=64, width=64, output_type="np").images.shape == (1, 64, 64, 3)
    with pytest.raises(ConfigError, match="prediction_type"):
        ToyTrainConfig(prediction_type="sample")
