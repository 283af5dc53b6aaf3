"""Tiny random Stable Diffusion pipelines built from configs (no download), for tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "photo", "of", "including", "and", "mug", "cup", "cat", "dog", "sofa", "red", "blue",
         "tree", "river", "sea", "lake", "water", "railway", "railroad", "track", "stone", "rocks",
         "grass", "with", "clothes", "person", ",", "."]


def write_tokenizer_files(folder: Path, words=WORDS) -> tuple[Path, Path]:
    """A CLIP BPE vocabulary in which every word of ``words`` is one token and any a-z text
    still tokenizes."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(words)) | set("abcdefghijklmnopqrstuvwxyz0123456789<>_-.,!"))
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges: list[str] = []
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            merges.append(f"{parts[0]} {parts[1]}")
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return folder / "vocab.json", folder / "merges.txt"


def build_tiny_pipeline(folder: Path, seed: int = 0):
    """Save a tiny random StableDiffusionPipeline to ``folder`` and return it.

    UNet: 3 resolutions (32, 64, 64 channels), cross-attention everywhere but the lowest down
    block, like SD's layout in miniature; VAE x2; 2-layer CLIP text encoder, width 32.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=32,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    ))
    vocab, merges = write_tokenizer_files(folder / "_tok")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, clip_sample=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    # the model card's find size: at the paper's 704+ px the x2 VAE gives 350x350 latents
    (folder / "personaseg.json").write_text(json.dumps({"find": {"long_side": 64}}))
    return pipe
