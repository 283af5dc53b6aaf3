"""The toy text-to-image model: a tiny Stable-Diffusion-shaped set of diffusers components.

Same classes as SD 1.x (AutoencoderKL, UNet2DConditionModel, CLIPTextModel, CLIPTokenizer,
DDPM-style scheduler with SD's betas), so personaseg uses it through exactly SD's code path.
64 px images, a x2 VAE (32x32x4 latents), a UNet with cross-attention at the 32, 16 and 8 grids.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ToyModelConfig:
    """Sizes of the toy model's parts."""

    image_size: int = 64  # pixels per side
    vae_channels: tuple[int, ...] = (32, 64)  # VAE blocks: len-1 downsamplings (x2)
    latent_channels: int = 4  # as SD
    unet_channels: tuple[int, ...] = (32, 96, 128)  # UNet blocks at the 32, 16, 8 latent grids
    unet_heads: tuple[int, ...] = (2, 4, 4)  # attention heads per block (head dim 16, 24, 32)
    text_hidden: int = 96  # CLIP text encoder width (= UNet cross_attention_dim)
    text_layers: int = 3  # CLIP text encoder layers
    text_heads: int = 4  # CLIP text encoder heads


# SD 1.x's noise schedule: timestep 150 means what it means for SD.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)


def build_vae(cfg: ToyModelConfig):
    """A randomly initialised x2 AutoencoderKL."""
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=16,
        sample_size=cfg.image_size,
        mid_block_add_attention=False,  # purely convolutional: trains on crops, runs on any size
    )


def build_unet(cfg: ToyModelConfig):
    """A randomly initialised UNet2DConditionModel: cross-attention at every latent grid."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=cfg.image_size // 2 ** (len(cfg.vae_channels) - 1),
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=tuple(cfg.unet_channels),
        layers_per_block=1,
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=tuple(cfg.unet_heads),  # diffusers' name: the number of heads here
        norm_num_groups=16,
    )


def build_text_encoder(cfg: ToyModelConfig, vocab_size: int, bos_id: int, eos_id: int):
    """A randomly initialised CLIPTextModel of the toy size."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.text_hidden,
            intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=77,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
    )


def build_scheduler(prediction_type: str = "epsilon"):
    """SD's training/inference scheduler (PNDM as SD 1.x ships; same betas as DDPM training).

    ``prediction_type``: what the UNet predicts, "epsilon" (SD 1.x) or "v_prediction" (SD 2.x).
    """
    from diffusers import PNDMScheduler

    return PNDMScheduler.from_config({**SCHEDULER_CONFIG, "skip_prk_steps": True, "prediction_type": prediction_type})


def n_params(module) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in module.parameters())
