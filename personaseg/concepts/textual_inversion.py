"""Textual Inversion pieces: token names, the trainable rows, the embedding file.

A concept's token ``<mymug>`` with K vectors becomes K tokenizer entries named as diffusers'
``load_textual_inversion`` names them: ``<mymug>``, ``<mymug>_1``, ..., ``<mymug>_{K-1}``.
Training never touches the text encoder's embedding matrix: :class:`TokenRows` wraps it and
substitutes K trainable fp32 rows for the new token ids, so every other row is unchanged by
construction, the optimizer state is K x width, and the wrapper is removed after training.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConceptError

EMBEDS_FILE = "learned_embeds.safetensors"  # diffusers' TEXT_INVERSION_NAME_SAFE
A1111_KEY = "emb_params"  # the key A1111 / ComfyUI .safetensors embeddings use
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME = 100  # characters of a concept name: its folder, lock and temp names stay far below 255 bytes
# Names Windows cannot give a file or folder (also with any extension: "con.txt").
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
MAX_VECTORS = 75  # K sub-tokens must fit a 77-token prompt with its start and end tokens
MAX_WIDTH = 16384  # text-encoder widths are 768 (SD 1.x), 1024 (SD 2.x), 1280 / 2048 (SDXL)
DEFAULT_INIT_WORD = "object"  # initialises the vectors when no class word is given


def parse_token(token: str, quiet: bool = False) -> tuple[str, str]:
    """``"<mymug>"`` -> ``("mymug", "<mymug>")``. A bare ``mymug`` is wrapped (with a warning
    unless ``quiet``: names taken from file names are bare by nature).

    Raises :class:`ConceptError` for spaces or characters that cannot name a folder.
    """
    raw = (token or "").strip()
    inner = raw[1:-1] if raw.startswith("<") and raw.endswith(">") else raw.strip("<>")
    if not inner:
        raise ConceptError("the token is empty", hint="write it like --token '<mymug>'")
    if any(ch.isspace() for ch in inner):
        suggestion = "-".join(inner.split())
        raise ConceptError(
            f"token {raw!r} contains a space: a token is one word",
            hint=f"use e.g. --token '<{suggestion}>'",
        )
    check_name(inner, raw)
    if raw != f"<{inner}>" and not quiet:
        from .data import LearnWarning

        warnings.warn(f"token {raw!r} written as <{inner}> (concept tokens are in angle brackets)",
                      LearnWarning, stacklevel=3)
    return inner, f"<{inner}>"


def check_name(name: str, shown: str | None = None) -> str:
    """Refuse a concept name that cannot be a folder of the store on every system: other characters
    than letters, digits, ``-``, ``_``, ``.`` (a ``/`` or ``..`` would leave the store), a leading
    dot (the store's own temp and run folders), more than :data:`MAX_NAME` characters, a trailing
    dot or a name Windows reserves (``con``, ``nul``, ``com1``, ...). Returns ``name``."""
    shown = shown if shown is not None else name
    if not isinstance(name, str) or not _NAME.match(name) or not name.isascii():
        raise ConceptError(
            f"token {shown!r} has characters that cannot name a concept",
            hint="use letters, digits, '-', '_' and '.', starting with a letter or digit, like --token '<my-mug>'",
        )
    if len(name) > MAX_NAME:
        raise ConceptError(
            f"token {shown[:40]!r}... is {len(name)} characters long, more than a concept name may have ({MAX_NAME})",
            hint="choose a shorter --token",
        )
    if name.endswith(".") or name.split(".")[0].lower() in _RESERVED:
        raise ConceptError(
            f"token {shown!r} is a reserved file name on some systems",
            hint="choose another --token, e.g. <my-" + name.strip(".") + ">",
        )
    return name


def sub_tokens(token: str, k: int) -> list[str]:
    """The K tokenizer entries of a K-vector token, named as diffusers names them."""
    return [token] + [f"{token}_{i}" for i in range(1, k)]


def check_free(tokenizer, tokens: list[str]) -> None:
    """Refuse tokens the tokenizer already knows (a word of the model or a loaded concept)."""
    vocab = tokenizer.get_vocab()
    taken = [t for t in tokens if t in vocab]
    if taken:
        raise ConceptError(
            f"token {taken[0]} is already in the model's tokenizer (a word or a loaded concept)",
            hint="choose another --token, e.g. <my-" + taken[0].strip("<>") + ">",
        )


def class_word_vector(tokenizer, embedding: nn.Embedding, word: str | None) -> torch.Tensor:
    """The class word's input embedding (a multi-token word is averaged), fp32 ``(width,)``."""
    ids = tokenizer(word or DEFAULT_INIT_WORD, add_special_tokens=False).input_ids
    if not ids:
        raise ConceptError(f"class word {word!r} gives no tokens", hint="use a plain word like 'mug'")
    with torch.no_grad():
        return embedding.weight[torch.tensor(ids, device=embedding.weight.device)].float().mean(0)


class TokenRows(nn.Module):
    """A token embedding whose rows for ``ids`` come from a trainable ``(K, width)`` parameter."""

    def __init__(self, base: nn.Embedding, ids: list[int], init: torch.Tensor):
        super().__init__()
        self.base = base  # the text encoder's own embedding, frozen and never written
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.rows = nn.Parameter(init.detach().float().clone())  # (K, width), fp32 even under AMP

    @property
    def weight(self) -> torch.Tensor:
        """The base matrix (for code that reads ``get_input_embeddings().weight``)."""
        return self.base.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> ``(B, T, width)``; new ids take their trainable row."""
        safe = input_ids.clamp(max=self.base.num_embeddings - 1)  # new ids may lie past the matrix
        out = self.base(safe)
        for k in range(self.ids.numel()):
            hit = (input_ids == self.ids[k]).unsqueeze(-1)  # (B, T, 1)
            out = torch.where(hit, self.rows[k].to(out.dtype), out)
        return out


def save_embeds(path: Path, token: str, rows: torch.Tensor) -> None:
    """Write ``{token: (K, width)}`` as diffusers' ``load_textual_inversion`` reads it."""
    save_file({token: rows.detach().float().cpu().contiguous()}, str(path))


def load_embeds(path: Path) -> tuple[str | None, torch.Tensor]:
    """Read an embedding file: diffusers ``{token: t}``, A1111 ``{"emb_params": t}`` and
    flattened ``string_to_param.*``. Returns ``(token or None, (K, width) fp32)``."""
    try:
        sd = load_file(str(path))
    except Exception as err:  # safetensors raises several types for a bad file
        raise ConceptError(
            f"{path} is not a readable .safetensors embedding ({type(err).__name__})",
            hint="give a learned_embeds.safetensors or an A1111 embedding .safetensors",
        ) from None
    if not isinstance(sd, dict):  # pragma: no cover - load_file always gives a dict
        sd = {}
    if A1111_KEY in sd:
        token, t = None, sd[A1111_KEY]
    elif "string_to_param.*" in sd:
        token, t = None, sd["string_to_param.*"]
    elif len(sd) == 1:
        token, t = next(iter(sd.items()))
    else:
        raise ConceptError(
            f"{path} holds {len(sd)} tensors, not one embedding",
            hint="a Textual Inversion file has one tensor (K, width)",
        )
    t = t.unsqueeze(0) if t.ndim == 1 else t
    check_rows(t, path)
    return token, t.float()


def check_rows(rows: torch.Tensor, where: Path | str, width: int | None = None) -> None:
    """Refuse an embedding that is not ``(K, width)`` with 1 <= K <= :data:`MAX_VECTORS`, of
    finite floats, and (when known) of the text encoder's ``width``."""
    fix = "a Textual Inversion embedding is (K, width) floats, K vectors of the text encoder's width"
    if not rows.is_floating_point():
        raise ConceptError(f"{where} holds a {str(rows.dtype).replace('torch.', '')} tensor, not float embeddings",
                           hint=fix)
    if rows.ndim != 2 or not 1 <= rows.shape[0] <= MAX_VECTORS or not 1 <= rows.shape[1] <= MAX_WIDTH:
        raise ConceptError(f"{where} holds a tensor of shape {tuple(rows.shape)}, not an embedding", hint=fix)
    if width is not None and rows.shape[1] != width:
        raise ConceptError(f"{where} holds vectors of width {rows.shape[1]}, but the concept's width is {width}",
                           hint="the files were edited by hand: learn or import the concept again")
    if not bool(torch.isfinite(rows).all()):
        raise ConceptError(f"{where} holds NaN or infinite values", hint="learn or import the concept again")
