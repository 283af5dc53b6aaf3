"""Optional attention grounding for toy training: each object's words attend to its pixels.

SD learned from billions of captions that a word's cross-attention lands on its object; a toy
UNet trained from scratch for minutes on 2 CPU cores does not get there (it attended almost
uniformly over all 77 tokens after 1000 steps). Since the toy world knows every object's mask,
training can add a grounding term: for each colour and shape word of the caption, the KL
divergence from its object's visible mask (as a uniform distribution) to its cross-attention map.

This only shapes *where* the existing cross-attention looks during training; the saved model
is a plain UNet2DConditionModel. A personal token learned later (Textual Inversion) gets no
such help: it must earn its map through the denoising loss alone.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..capture import project_qkv, project_out


class GroundedAttnProcessor:
    """Plain softmax cross-attention that also keeps its head-averaged probabilities and, when
    given a ``features`` list, its input image features as ``(layer name, (B, N, C))``."""

    def __init__(self, store: list[torch.Tensor], features: list | None = None, name: str = ""):
        self.store, self.features, self.name = store, features, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if self.features is not None:
            self.features.append((self.name, hidden_states))  # (B, N, C)
        residual, input_shape = hidden_states, hidden_states.shape
        q, k, v = project_qkv(attn, hidden_states, encoder_hidden_states)  # (B, h, N or T, d)
        probs = (q @ k.transpose(-1, -2) * attn.scale).softmax(dim=-1, dtype=torch.float32)  # (B, h, N, T), fp32 under autocast too
        self.store.append(probs.mean(dim=1))  # (B, h, N, T) -> (B, N, T)
        return project_out(attn, probs @ v, residual, input_shape)  # (B, h, N, d) -> (B, N, h*d) -> to_out


class Fp32AttnProcessor:
    """diffusers' default attention computed in fp32 under autocast too: on this CPU the bf16
    flash-attention backward of the 32x32 self-attention (1024 tokens, head dim 16) was slower
    than the fp32 one."""

    def __init__(self):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.inner = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, *args, **kw):
        with torch.autocast(hidden_states.device.type, enabled=False):
            return self.inner(attn, hidden_states.float(), *args, **kw)


class Grounding:
    """The grounded processor on every cross-attention (attn2) of a UNet, for training.

    A context manager, as :class:`~personaseg.capture.AttentionCapture` is: it installs the processors
    and puts back the ones the UNet had on exit, even on error. ``store`` gets each layer's
    head-averaged cross-attention per forward; with ``features`` (a list), each layer also appends
    ``(name, its input features)`` there. ``fp32_self``: self-attention (attn1) in fp32 under
    autocast (:class:`Fp32AttnProcessor`).
    """

    def __init__(self, unet, features: list | None = None, fp32_self: bool = False):
        self.unet, self.features, self.fp32_self = unet, features, fp32_self
        self.store: list[torch.Tensor] = []
        self._originals: dict | None = None

    def __enter__(self) -> "Grounding":
        if self._originals is not None:
            raise RuntimeError("this Grounding is already installed")
        self._originals = self.unet.attn_processors
        procs = {}
        for name, proc in self._originals.items():
            if name.endswith("attn2.processor"):
                procs[name] = GroundedAttnProcessor(self.store, self.features, _layer(name))
            else:
                procs[name] = Fp32AttnProcessor() if self.fp32_self else proc
        self.unet.set_attn_processor(procs)
        return self

    def __exit__(self, *exc) -> None:
        if self._originals is not None:
            self.unet.set_attn_processor(self._originals)
            self._originals = None

    def plain_copy(self):
        """A deep copy of the UNet with the processors it had before (what a snapshot saves)."""
        unet = copy.deepcopy(self.unet)
        if self._originals is not None:
            unet.set_attn_processor(copy.deepcopy(self._originals))
        return unet


def _layer(processor_name: str) -> str:
    """``down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor`` -> its module path."""
    return processor_name.removesuffix(".processor")


def token_masks(masks: torch.Tensor, positions: list[list[list[int]]], n_tokens: int) -> torch.Tensor:
    """Per-token target masks (B, T, h, w) from object masks (B, K, h, w) and word positions."""
    b, _, hh, ww = masks.shape
    out = torch.zeros(b, n_tokens, hh, ww)
    for i, per_obj in enumerate(positions):
        for k, pos in enumerate(per_obj):
            for p in pos:
                if p < n_tokens:
                    out[i, p] = masks[i, k]
    return out


def grounding_loss(store: list[torch.Tensor], targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """KL(object || attention) of each supervised word, averaged over layers and words.

    Each word's cross-attention over the grid is made a distribution and compared with the
    uniform distribution over its object's visible pixels: it must land inside *and* cover the
    object (a share-inside loss alone gave peaky maps on parts of the object).
    ``store``: (B, N_l, T) per cross-attention layer; ``targets``: (B, T, h, w) soft masks on the
    finest grid; ``weight``: (B,) 1 for samples to supervise (e.g. t < t_max), else 0.
    """
    has = targets.flatten(2).amax(dim=2) > 0  # (B, T) supervised tokens
    w = has.float() * weight[:, None]  # (B, T)
    bi, ti = w.nonzero(as_tuple=True)  # the few supervised (sample, token) pairs of the B x 77
    if len(bi) == 0:
        return targets.new_zeros(())
    w, chosen = w[bi, ti], targets[bi, ti][:, None]  # (M,), (M, 1, h, w)
    per_side: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    losses = []
    for probs in store:
        side = int(round(probs.shape[1] ** 0.5))
        if side not in per_side:  # layers on the same grid share the pooled targets
            tgt = F.adaptive_avg_pool2d(chosen, side).flatten(1)  # (M, N_l)
            tgt = tgt / tgt.sum(dim=1, keepdim=True).clamp_min(1e-8)
            per_side[side] = tgt, tgt * torch.log(tgt.clamp_min(1e-8))
        tgt, tgt_log_tgt = per_side[side]
        a = probs[bi, :, ti]  # (M, N): each chosen token's attention over the grid
        a = a / a.sum(dim=1, keepdim=True).clamp_min(1e-8)  # each token's map sums to 1 over pixels
        kl = (tgt_log_tgt - tgt * torch.log(a.clamp_min(1e-8))).sum(dim=1)  # (M,)
        losses.append((kl * w).sum() / w.sum())
    return torch.stack(losses).mean()


# --- per-pixel classes ------------------------------------------------------------------------
# The grounding term alone did not teach a from-scratch toy UNet what a shape is: a linear probe on
# its attention inputs told the five shapes apart at chance (0.30-0.39 vs majority 0.30) after 600
# steps, and a bare shape word's peak landed on its object at chance. Colour is readable from one
# pixel, shape is not. SD learned shapes from billions of images; here small per-pixel classifiers
# on each cross-attention layer's input features (discarded after training) ask the UNet to encode
# which shape (``shape_loss``) and which colour and pattern (``look_loss``) each pixel belongs to, so
# a shape word's key has something to match and a learned token can still tell instances apart.


def class_heads(unet, n_classes: int) -> torch.nn.ModuleDict:
    """One linear classifier (n classes + background) per cross-attention layer of ``unet``."""
    heads = {}
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            attn = unet.get_submodule(_layer(name))
            heads[_key(_layer(name))] = torch.nn.Linear(attn.to_q.in_features, n_classes + 1)
    return torch.nn.ModuleDict(heads)


def _key(layer: str) -> str:
    return layer.replace(".", "_")  # ModuleDict keys cannot hold dots


def class_targets(masks: torch.Tensor, class_ids: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per-pixel class distributions (B, n + 1, h, w), the last class the background.

    ``masks``: (B, K, h, w) visible coverage of object slot k; ``class_ids``: (B, K) its
    class index (e.g. its shape), -1 for an empty slot.
    """
    b, k, h, w = masks.shape
    onehot = F.one_hot(class_ids.clamp_min(0), n_classes).float() * (class_ids >= 0).float()[..., None]  # (B, K, S)
    obj = torch.einsum("bks,bkhw->bshw", onehot, masks)  # (B, S, h, w)
    bg = (1 - obj.sum(dim=1, keepdim=True)).clamp_min(0)  # (B, 1, h, w)
    return torch.cat([obj, bg], dim=1)


def class_loss(features: list, heads: torch.nn.ModuleDict, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy of each layer's per-pixel class prediction, averaged over layers.

    ``features``: ``(layer, (B, N, C))`` from :class:`Grounding`; ``targets``: (B, S + 1, h, w) from
    :func:`class_targets` on the finest grid; ``weight``: (B,) 1 for samples to supervise.
    """
    if weight.sum() == 0 or not features:
        return targets.new_zeros(())
    losses = []
    for layer, feat in features:
        side = int(round(feat.shape[1] ** 0.5))
        tgt = F.adaptive_avg_pool2d(targets, side).flatten(2).transpose(1, 2)  # (B, N, S + 1)
        logp = heads[_key(layer)](feat.float()).log_softmax(dim=-1)  # (B, N, S + 1)
        ce = -(tgt * logp).sum(dim=-1).mean(dim=1)  # (B,)
        losses.append((ce * weight).sum() / weight.sum())
    return torch.stack(losses).mean()
