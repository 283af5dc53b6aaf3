"""Attention capture: diffusers attention processors that record what T2M reads.

This layer knows nothing of T2M. It installs processors on the named attention modules only,
restores the originals on exit (even on error) and refuses to hook twice. Per UNet call it records

- for a cross-attention module: the softmax over all text tokens averaged over heads, ``(B, N, T)``;
- for a self-attention module: the head-split queries and keys ``(B, heads, N, d)`` and the
  softmax scale, an O(N) description of the affinity A = softmax(q k^T * scale) that
  ``t2m.refine`` multiplies with fused attention, never forming the N x N matrix.

With ``stop_after_last`` the UNet forward is cut short once every hooked module has run, since
nothing after it is read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


class _StopForward(Exception):
    """Raised by the last hooked processor to end a UNet forward whose output is not read."""


@dataclass
class QueryKey:
    """Self-attention of one module: A = mean over heads of softmax(q @ k^T * scale)."""

    q: torch.Tensor  # (B, heads, N, d)
    k: torch.Tensor  # (B, heads, N, d)
    scale: float


def project_qkv(attn, hidden_states, encoder_hidden_states):
    """The input side of diffusers' ``AttnProcessor2_0``: norms and q/k/v, split by head
    ``(B, heads, N or T, d)``. Shared with the toy world's training processors."""
    if attn.spatial_norm is not None:  # pragma: no cover - not used by SD UNets
        raise NotImplementedError("spatial-norm attention is not supported")
    if hidden_states.ndim == 4:  # (B, C, H, W) -> (B, N, C)
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    value = attn.to_v(encoder_hidden_states)
    batch, heads = query.shape[0], attn.heads
    # (B, N, heads*d) -> (B, heads, N, d)
    query, key, value = (
        x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2) for x in (query, key, value)
    )
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key, value


def project_out(attn, out, residual, input_shape):
    """The output side of ``AttnProcessor2_0``: merge heads, project, residual, reshape."""
    batch, heads, n, d = out.shape
    out = out.transpose(1, 2).reshape(batch, n, heads * d)  # (B, heads, N, d) -> (B, N, C)
    out = attn.to_out[1](attn.to_out[0](out))
    if len(input_shape) == 4:  # (B, N, C) -> (B, C, H, W)
        out = out.transpose(-1, -2).reshape(input_shape)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


class _Recorder:
    """A diffusers attention processor that records, then computes the usual output."""

    def __init__(self, capture: "AttentionCapture", name: str, kind: str):
        self.capture, self.name, self.kind = capture, name, kind

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if attention_mask is not None:
            raise NotImplementedError("attention masks are not supported by the capture")
        residual, input_shape = hidden_states, hidden_states.shape
        q, k, v = project_qkv(attn, hidden_states, encoder_hidden_states)
        last = self.capture._mark(self.name)
        if self.kind == "cross":
            # the paper's map: softmax over all text tokens, start/end/padding included
            probs = torch.softmax((q @ k.transpose(-1, -2)).float() * attn.scale, dim=-1)  # (B, heads, N, T)
            self.capture._records[self.name].append(probs.mean(dim=1))  # -> (B, N, T)
            if last:
                raise _StopForward
            out = (probs.to(v.dtype) @ v)
        else:
            self.capture._records[self.name].append(QueryKey(q, k, float(attn.scale)))
            if last:
                raise _StopForward
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        return project_out(attn, out, residual, input_shape)


class AttentionCapture:
    """Context manager recording head-averaged attention of named modules of a UNet.

    >>> with AttentionCapture(unet, cross=names2, self_=names1) as cap:
    ...     cap.run(lambda: unet(latents, t, encoder_hidden_states=text))
    >>> cap.cross(name)       # (B, N, T), batches of several runs concatenated
    >>> cap.self_attention(name)  # QueryKey with (B, heads, N, d) tensors
    """

    def __init__(self, unet, cross: list[str] = (), self_: list[str] = (), stop_after_last: bool = True):
        self.unet = unet
        self.kinds = {**{n: "cross" for n in cross}, **{n: "self" for n in self_}}
        if not self.kinds:
            raise ValueError("nothing to capture: name at least one attention module")
        known = unet.attn_processors
        for name in self.kinds:
            if f"{name}.processor" not in known:
                raise KeyError(f"no attention module {name!r} in this UNet")
        self.stop_after_last = stop_after_last
        self._records: dict[str, list] = defaultdict(list)
        self._seen: set[str] = set()
        self._originals: dict[str, object] | None = None
        self.calls = 0  # UNet forwards run through ``run``

    # -- hooking
    def hook(self) -> "AttentionCapture":
        if self._originals is not None:
            raise RuntimeError("this AttentionCapture is already hooked")
        if hooked(self.unet):
            raise RuntimeError("another AttentionCapture is hooked on this UNet")
        originals = self.unet.attn_processors
        self._originals = originals
        new = dict(originals)
        for name, kind in self.kinds.items():
            new[f"{name}.processor"] = _Recorder(self, name, kind)
        self.unet.set_attn_processor(new)
        return self

    def unhook(self) -> None:
        if self._originals is not None:
            self.unet.set_attn_processor(self._originals)
            self._originals = None

    def __enter__(self) -> "AttentionCapture":
        return self.hook()

    def __exit__(self, *exc) -> None:
        self.unhook()

    # -- running
    def _mark(self, name: str) -> bool:
        """Note that ``name`` ran in this forward; True when it completes the set (stop now)."""
        self._seen.add(name)
        return self.stop_after_last and len(self._seen) == len(self.kinds)

    def run(self, forward: Callable[[], object]):
        """Run one UNet forward; returns its output, or None when it was cut short."""
        if self._originals is None:
            raise RuntimeError("call hook() (or use `with`) before run()")
        self._seen.clear()
        self.calls += 1
        try:
            out = forward()
        except _StopForward:
            return None
        missing = set(self.kinds) - self._seen
        if missing:
            raise RuntimeError(f"the UNet forward never ran {sorted(missing)}")
        return out

    # -- results
    def cross(self, name: str) -> torch.Tensor:
        """``(B, N, T)`` head-averaged cross-attention probabilities of all runs."""
        return torch.cat(self._records[name], dim=0)

    def self_attention(self, name: str) -> QueryKey:
        """Queries and keys of all runs, concatenated along the batch."""
        recs = self._records[name]
        return QueryKey(torch.cat([r.q for r in recs]), torch.cat([r.k for r in recs]), recs[0].scale)

    def clear(self) -> None:
        self._records.clear()


def hooked(unet) -> list[str]:
    """The attention processors of ``unet`` that a capture has replaced (``"<module>.processor"``);
    empty when no capture is hooked."""
    return [name for name, p in unet.attn_processors.items() if isinstance(p, _Recorder)]
