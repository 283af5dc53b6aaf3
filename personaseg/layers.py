"""The layer map: which transformer blocks of a UNet T2M reads (spec steps 5 and 6).

Blocks are numbered in execution order (``down_blocks.*``, ``mid_block``, ``up_blocks.*``). SD 1.x and
2.x read cross-attention from blocks 4-8 and the self-attention affinity from block 11; other UNets
get a structural rule, and a model card or an explicit override wins over both (:func:`layer_map_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ModelError

# Spec step 5/6: SD 1.x and 2.x, blocks numbered in execution order 0..15.
SD_CROSS_BLOCKS = (4, 5, 6, 7, 8)  # down_blocks.2 (1/32), mid_block (1/64), up_blocks.1 (1/32)
SD_SELF_BLOCK = 11  # up_blocks.2.attentions.1 (1/16 of the image)
SD_BLOCK_OUT_CHANNELS = (320, 640, 1280, 1280)


@dataclass(frozen=True)
class Block:
    """One transformer block (a ``Transformer2DModel``) of the UNet."""

    index: int  # execution order, as in the spec (0..15 for SD 1.x)
    name: str  # module path, e.g. "up_blocks.2.attentions.1"
    factor: int  # downsampling relative to the latent grid (1, 2, 4, 8)
    path: str  # "down", "mid" or "up"


@dataclass(frozen=True)
class LayerMap:
    """Which blocks T2M reads: cross-attention maps from ``cross``, the affinity from ``self_``."""

    cross: tuple[Block, ...]
    self_: Block | None

    def cross_modules(self, unet) -> list[str]:
        """Names of the cross-attention modules (attn2) inside the cross blocks."""
        return [n for n, _ in self.cross_modules_with_factor(unet)]

    def cross_modules_with_factor(self, unet) -> list[tuple[str, int]]:
        """(module name, grid factor of its block) for every cross-attention module read."""
        return [(n, b.factor) for b in self.cross for n in _attn_modules(unet, b.name, "attn2")]

    def self_modules(self, unet) -> list[str]:
        """Names of the self-attention modules (attn1) of the self block (first sub-block)."""
        return [] if self.self_ is None else _attn_modules(unet, self.self_.name, "attn1")[:1]

    def describe(self) -> dict[str, Any]:
        return {"cross": [b.name for b in self.cross], "self": self.self_.name if self.self_ else None}


def _attn_modules(unet, block: str, kind: str) -> list[str]:
    """Full names of the ``kind`` ("attn1" self, "attn2" cross) modules inside ``block``."""
    names = []
    for name, _ in unet.get_submodule(block).named_modules():
        if name.startswith("transformer_blocks") and name.endswith(kind):
            names.append(f"{block}.{name}")
    return names


def list_blocks(unet) -> list[Block]:
    """The UNet's transformer blocks in execution order, with their grid factor."""
    blocks: list[Block] = []
    factor = 1

    def add(part, prefix: str, path: str) -> None:
        for j, _ in enumerate(getattr(part, "attentions", None) or []):
            blocks.append(Block(len(blocks), f"{prefix}.attentions.{j}", factor, path))

    for i, down in enumerate(unet.down_blocks):
        add(down, f"down_blocks.{i}", "down")
        if getattr(down, "downsamplers", None):
            factor *= 2
    if unet.mid_block is not None:
        add(unet.mid_block, "mid_block", "mid")
    for i, up in enumerate(unet.up_blocks):
        add(up, f"up_blocks.{i}", "up")
        if getattr(up, "upsamplers", None):
            factor //= 2
    return blocks


def _is_sd(unet, blocks: list[Block]) -> bool:
    cfg = unet.config
    return tuple(cfg.block_out_channels) == SD_BLOCK_OUT_CHANNELS and len(blocks) == 16


def _pick(blocks: list[Block], names: list[str | int], what: str) -> list[Block]:
    by_name = {b.name: b for b in blocks}
    chosen = []
    for n in names:
        key = str(n).strip()
        if key.isdigit() and int(key) < len(blocks):
            chosen.append(blocks[int(key)])
        elif key in by_name:
            chosen.append(by_name[key])
        else:
            raise ModelError(
                f"unknown {what} block {key!r} for this UNet",
                hint="use a block index 0.." + str(len(blocks) - 1) + " or one of: "
                + ", ".join(by_name),
            )
    return chosen


def layer_map_for(
    unet,
    cross: list[str | int] | None = None,
    self_: str | int | None = None,
    card_map: dict[str, Any] | None = None,
) -> LayerMap:
    """The layer map of ``unet``: explicit override > model card > SD rule > structural rule.

    The structural rule (for UNets that are not SD 1.x/2.x): cross = every block at the two
    coarsest grids; self = the up-path block at half the latent resolution (SD's block 11 is at
    1/2 of the latent, 1/16 of the image), the middle one when there are several.
    """
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        raise ModelError("SDXL UNets are not supported yet", hint="use a Stable Diffusion 1.x or 2.x model")
    blocks = list_blocks(unet)
    if not blocks:
        raise ModelError("this UNet has no attention blocks", hint="T2M needs a text-conditioned UNet")
    card_map = card_map or {}
    if _is_sd(unet, blocks):
        default_cross = [blocks[i] for i in SD_CROSS_BLOCKS]
        default_self: Block | None = blocks[SD_SELF_BLOCK]
    else:
        factors = sorted({b.factor for b in blocks}, reverse=True)[:2]
        default_cross = [b for b in blocks if b.factor in factors]
        ups = [b for b in blocks if b.path == "up"]
        target = min(ups, key=lambda b: abs(b.factor - 2)).factor if ups else None
        at = [b for b in ups if b.factor == target]
        default_self = at[len(at) // 2] if at else None
    cross_names = cross or card_map.get("cross")
    self_name = self_ if self_ is not None else card_map.get("self")
    chosen_cross = _pick(blocks, list(cross_names), "cross") if cross_names else default_cross
    if self_name in ("", "none", "None"):
        chosen_self = None
    elif self_name is not None:
        chosen_self = _pick(blocks, [self_name], "self")[0]
    else:
        chosen_self = default_self
    return LayerMap(tuple(chosen_cross), chosen_self)
