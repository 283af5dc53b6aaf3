"""LoRA DreamBooth pieces with peft: adding the adapter, reading it out, removing it, the file.

The adapter sits on the UNet's attention projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``),
rank ``r`` and ``lora_alpha = r`` as diffusers' ``train_dreambooth_lora.py``; optionally on the
text encoder's (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``). The weights file is what
``StableDiffusionPipeline.save_lora_weights`` writes, so ``load_lora_weights`` reads it unchanged.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@contextmanager
def second_adapter_ok():
    """Silence peft's "Already found a `peft_config`" warning: several adapters on one UNet is how
    concepts share a model (``Segmenter`` activates one per find; learning sets its own alone)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)
        yield


def lora_config(rank: int, targets: list[str]):
    """peft ``LoraConfig`` as diffusers' DreamBooth LoRA example builds it."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets)


class UnetAdapter:
    """Add a named LoRA adapter to a diffusers UNet and take it off again, leaving the UNet as found.

    A UNet without adapters gets its original modules back (``unload_lora``); one that already
    carried adapters keeps them, with the adapters that were active made active again.
    """

    def __init__(self, unet, name: str, rank: int):
        self.unet, self.name = unet, name
        self.had_peft = bool(getattr(unet, "peft_config", None))
        self.active = list(unet.active_adapters()) if self.had_peft else []
        with second_adapter_ok():
            unet.add_adapter(lora_config(rank, UNET_TARGETS), adapter_name=name)
        unet.set_adapter(name)  # train our adapter alone
        cast_trainable_fp32(unet)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's weights in diffusers' key format (``...to_q.lora.down.weight``)."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        sd = get_peft_model_state_dict(self.unet, adapter_name=self.name)
        return convert_state_dict_to_diffusers(sd)

    def metadata(self) -> dict:
        """The adapter's peft config, stored in the file so loaders know rank and alpha."""
        return self.unet.peft_config[self.name].to_dict()

    def remove(self) -> None:
        """Take the adapter off; restore the UNet's previous adapters or its plain modules."""
        if self.had_peft:
            if self.active:  # first, so peft does not warn that it deletes the active adapter
                self.unet.set_adapter(self.active)
            self.unet.delete_adapters(self.name)
        else:
            self.unet.unload_lora()


def check_text_encoder_lora() -> None:
    """Text-encoder LoRA goes through transformers' peft integration (diffusers loads it that way
    too); refuse early when the installed peft is older than that integration requires."""
    from importlib.metadata import version

    try:
        from transformers.integrations.peft import MIN_PEFT_VERSION
    except ImportError:  # older transformers: no separate minimum
        return
    from packaging.version import Version

    have = version("peft")
    if Version(have) < Version(MIN_PEFT_VERSION):
        from ..errors import ConfigError

        raise ConfigError(
            f"text-encoder LoRA needs peft >= {MIN_PEFT_VERSION} with this transformers (installed: peft {have})",
            hint="pip install -U peft, or train without lora_train_text_encoder",
        )


def add_text_encoder_lora(text_encoder, name: str, rank: int) -> None:
    """Put a LoRA adapter on the text encoder's attention (transformers' peft integration)."""
    text_encoder.add_adapter(lora_config(rank, TEXT_TARGETS), adapter_name=name)
    text_encoder.set_adapter(name)
    cast_trainable_fp32(text_encoder)


def text_encoder_lora_state_dict(text_encoder, name: str) -> dict[str, torch.Tensor]:
    """The text encoder adapter in diffusers' key format."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(text_encoder, adapter_name=name))


def cast_trainable_fp32(module: nn.Module) -> None:
    """Trainable parameters in fp32 even when the frozen weights are fp16 (no unscale crash)."""
    for p in module.parameters():
        if p.requires_grad:
            p.data = p.data.float()


def save_lora(folder: Path, unet_sd: dict, unet_meta: dict, te_sd: dict | None, te_meta: dict | None) -> None:
    """Write ``pytorch_lora_weights.safetensors`` with diffusers' own writer."""
    from diffusers import StableDiffusionPipeline

    unet_sd = {k: v.detach().float().cpu().contiguous() for k, v in unet_sd.items()}
    if te_sd:
        te_sd = {k: v.detach().float().cpu().contiguous() for k, v in te_sd.items()}
    StableDiffusionPipeline.save_lora_weights(
        str(folder),
        unet_lora_layers=unet_sd,
        text_encoder_lora_layers=te_sd or None,
        weight_name=LORA_FILE,
        safe_serialization=True,
        unet_lora_adapter_metadata=unet_meta,
        text_encoder_lora_adapter_metadata=te_meta if te_sd else None,
    )
