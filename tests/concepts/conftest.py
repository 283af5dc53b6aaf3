"""Fixtures for the concept tests: a tiny random SD pipeline (built from configs, no download),
a few photos, and a fresh concept store per test."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

WORDS = ["a", "photo", "of", "the", "mug", "cup", "object", "red", "my", "rendering", "close-up"]


def _tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """The shared tiny CLIP vocabulary (tests/tiny.py) with this suite's words."""
    from tiny import write_tokenizer_files

    return write_tokenizer_files(folder, WORDS)


def build_tiny_sd(folder: Path, width: int = 32, seed: int = 0) -> Path:
    """Save a tiny random StableDiffusionPipeline: UNet (32, 64) channels, cross-attention width
    ``width``, VAE x2, 2-layer CLIP text encoder of width ``width``."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab, merges = _tokenizer_files(folder / "_tok")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=width,
        attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=32,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, clip_sample=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder / "model")
    # the model card's find size: at the paper's 704+ px the x2 VAE gives 350x350 latents
    (folder / "model" / "personaseg.json").write_text(json.dumps({"find": {"long_side": 64}}))
    return folder / "model"


def load_tiny(folder: Path):
    """A fresh pipeline from ``folder`` (every test gets its own, unmodified copy)."""
    from diffusers import StableDiffusionPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, above all on a CPU shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """Folder of the tiny pipeline (width 32)."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_sd_wide(tmp_path_factory) -> Path:
    """The same architecture with text width 48, to test width mismatches."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-48"), width=48)


@pytest.fixture
def pipe(tiny_sd):
    return load_tiny(tiny_sd)


@pytest.fixture
def photos(tmp_path) -> Path:
    """Three small photos of different sizes and aspect ratios."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(48, 40), (40, 56), (64, 64)]):
        a = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"mug{i}.png")
    return folder


@pytest.fixture
def store_dir(tmp_path) -> Path:
    return tmp_path / "concepts"


@pytest.fixture
def tiny_cfg():
    """A LearnConfig factory: 2 steps at 32 px, no accumulation (seconds on a CPU)."""
    from personaseg.concepts import LearnConfig

    def make(**kw) -> LearnConfig:
        base = dict(class_word="mug", steps=2, resolution=32, grad_accum=1, checkpoint_every=0)
        return LearnConfig(**{**base, **kw})

    return make
