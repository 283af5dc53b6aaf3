"""The pieces a :class:`~personaseg.concepts.trainer.Trainer` works with: the module it trains,
the flags it puts back, the photos' latents, a micro-batch, where find reads maps, and the masked
denoising loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class LearnModel(nn.Module):
    """Text encoder + UNet as one module, so accelerate can wrap (autocast, DDP) our step only."""

    def __init__(self, text_encoder: nn.Module, unet: nn.Module):
        super().__init__()
        self.text_encoder, self.unet = text_encoder, unet
        self.unet_dtype = unet.conv_in.weight.dtype

    def forward(self, input_ids: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder(input_ids)[0]  # (B, T, width)
        return self.unet(noisy.to(self.unet_dtype), t, hidden.to(self.unet_dtype)).sample


def checkpointing(m: nn.Module) -> bool:
    """Whether gradient checkpointing is on (transformers renamed the flag in v5)."""
    flag = getattr(type(m), "is_activation_checkpointing", None)
    name = "is_activation_checkpointing" if flag is not None else "is_gradient_checkpointing"
    return bool(getattr(m, name, False))


def lora_enabled(unet: nn.Module) -> bool:
    """Whether the UNet carries peft LoRA layers that are switched on."""
    if not getattr(unet, "peft_config", None):
        return False
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) and not m.disable_adapters for m in unet.modules())


class Flags:
    """requires_grad, train/eval, device and gradient checkpointing of modules, to put back."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = modules
        self.grad = [[(p, p.requires_grad) for p in m.parameters()] for m in modules]
        self.training = [m.training for m in modules]
        self.device = [next(m.parameters()).device for m in modules]
        self.ckpt = [checkpointing(m) for m in modules]

    def restore(self) -> None:
        for m, grads, training, device, ckpt in zip(
            self.modules, self.grad, self.training, self.device, self.ckpt
        ):
            for p, flag in grads:
                p.requires_grad_(flag)
            m.train(training)
            if next(m.parameters()).device != device:
                m.to(device)
            if not ckpt and checkpointing(m):
                if hasattr(m, "disable_gradient_checkpointing"):
                    m.disable_gradient_checkpointing()  # diffusers
                elif hasattr(m, "activation_checkpointing_disable"):
                    m.activation_checkpointing_disable()  # transformers >= 5
                else:
                    m.gradient_checkpointing_disable()


def encode_pairs(vae, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE posterior mean and std of each photo ``(N, 3, R, R)`` and its mirror image: ``(N, 2, 4, h, w)``
    each, float32 on the CPU (call under ``no_grad``)."""
    means, stds = [], []
    for x in pixels:  # one photo at a time bounds the VAE's memory
        pair = torch.stack([x, x.flip(-1)]).to(vae.device, vae.dtype)  # (2, 3, R, R)
        dist = vae.encode(pair).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    return torch.stack(means), torch.stack(stds)  # (N, 2, 4, h, w)


@dataclass
class Batch:
    """One micro-batch (instance samples first, then class samples with prior preservation)."""

    input_ids: torch.Tensor  # (B, T)
    latents: torch.Tensor  # (B, 4, h, w) clean latents
    noise: torch.Tensor  # (B, 4, h, w)
    timesteps: torch.Tensor  # (B,)
    masks: torch.Tensor | None = None  # (B, h, w) the object's share of each latent cell (1: unguided or class image)
    guided: torch.Tensor | None = None  # (B,) bool: the sample's photo has a mask


@dataclass
class ContrastSpec:
    """Where ``find`` reads presence and maps: the cross-attention modules (with grid factors) and t.
    Read by TI contrast and by the attention loss of masked photos."""

    cross: list[tuple[str, int]]  # (attention module name, grid factor of its block)
    timestep: int


def masked_mse(pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error; with ``masks`` (B, h, w) each latent cell weighted by its object share,
    so a masked photo's background is not learned (Break-A-Scene's masked loss)."""
    if masks is None:
        return F.mse_loss(pred, target)
    w = masks[:, None].to(pred.dtype)  # (B, h, w) -> (B, 1, h, w), broadcast over channels
    return ((pred - target) ** 2 * w).sum() / (w.sum() * pred.shape[1]).clamp_min(1e-8)
