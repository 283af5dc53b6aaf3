"""``Concept``: a learned personal concept on disk, and how it is put onto a pipeline.

A concept folder holds ``concept.json`` and ``learned_embeds.safetensors`` (``{token: (K, width)}``,
both methods), plus ``pytorch_lora_weights.safetensors`` for LoRA. ``Concept.apply(pipe)`` loads
them with diffusers' own loaders and returns the K sub-tokens that stand for the concept in a
prompt (the segmenter averages all of them as one phrase).

    >>> c = ConceptStore().get("<mymug>")
    >>> subs = c.apply(pipe)          # ["<mymug>", "<mymug>_1"]
    >>> c.prompt(expand=True)         # "a photo of a <mymug> <mymug>_1"
"""

from __future__ import annotations

import json
import math
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConceptError
from .config import fill_template
from .lora import LORA_FILE, second_adapter_ok
from .textual_inversion import EMBEDS_FILE, MAX_VECTORS, MAX_WIDTH, check_name, check_rows, load_embeds, sub_tokens

META_FILE = "concept.json"
METHODS = ("ti", "lora")


def _broken(folder: Path, problem: str) -> ConceptError:
    return ConceptError(
        f"concept folder {folder} is broken ({problem})",
        hint=f"remove it with `personaseg concepts rm {folder.name}` and learn or import it again",
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _meta_problem(meta: Any, need_name: bool = True) -> str | None:
    """What is wrong with a concept.json's content (None: nothing). The file may come from anyone."""
    if not isinstance(meta, dict):
        return f"concept.json holds a {type(meta).__name__}, not an object"
    if need_name and not isinstance(meta.get("name"), str):
        return "no name"
    if meta.get("method") not in METHODS:
        return f"method {meta.get('method')!r} is not one of {', '.join(METHODS)}"
    if not isinstance(meta.get("prompt_template"), str) or "{}" not in meta["prompt_template"]:
        return "prompt_template is not text with a '{}'"
    if not _is_int(meta.get("width")) or not 1 <= meta["width"] <= MAX_WIDTH:
        return f"width {meta.get('width')!r} is not a text-encoder width"
    if not _is_int(meta.get("num_vectors")) or not 1 <= meta["num_vectors"] <= MAX_VECTORS:
        return f"num_vectors {meta.get('num_vectors')!r} is not 1..{MAX_VECTORS}"
    for key in ("token", "class_word", "base_model", "base_model_path", "created"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"{key} {meta[key]!r} is not text"
    if meta.get("cross_attention_dim") is not None and not _is_int(meta["cross_attention_dim"]):
        return f"cross_attention_dim {meta['cross_attention_dim']!r} is not a number"
    ref = meta.get("presence_ref")
    if ref is not None and (isinstance(ref, bool) or not isinstance(ref, (int, float)) or not math.isfinite(ref)):
        return f"presence_ref {ref!r} is not a number"
    if meta.get("presence_ref_at") is not None and not isinstance(meta["presence_ref_at"], dict):
        return "presence_ref_at is not an object"
    return None


@contextmanager
def _quiet_loaders():
    """Silence the loaders' info-as-warning chatter (row initialisation, "no text-encoder keys",
    peft's "Already found a `peft_config`": a second LoRA concept on one UNet is by design, and
    ``Segmenter`` activates one adapter per find)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    levels = tlog.get_verbosity(), dlog.get_verbosity()
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    try:
        with second_adapter_ok():
            yield
    finally:
        tlog.set_verbosity(levels[0])
        dlog.set_verbosity(levels[1])


@dataclass
class Concept:
    """A learned concept: its token, files and what it was learned on."""

    name: str  # folder name, the token without brackets ("mymug")
    token: str  # "<mymug>"
    path: Path  # the concept's folder
    method: str  # "ti" or "lora"
    class_word: str | None  # what the thing is ("mug"), or None
    prompt_template: str  # find prompt, "{}" = the token's sub-tokens ("a photo of a {} mug")
    base_model: str | None  # model id it was learned on (None when imported without one)
    width: int  # text-encoder width of the embedding (768 for SD 1.x, 1024 for SD 2.x)
    num_vectors: int  # K sub-tokens
    meta: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole concept.json

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> "Concept":
        """Read ``folder/concept.json``; a missing or broken file is a :class:`ConceptError`.

        ``name``: the concept's name, which the store gives as the folder's name (a concept is its
        folder: a copied or renamed folder is a concept of its own); None takes concept.json's.
        Every field is checked here, so a crafted file fails now, in one line, not in a later find.
        """
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise _broken(folder, f"{type(err).__name__}: {str(err)[:120]}") from None
        problem = _meta_problem(meta, need_name=name is None)
        if problem:
            raise _broken(folder, problem)
        name = check_name(name if name is not None else meta["name"])
        return cls(
            name=name,
            token=f"<{name}>",
            path=folder,
            method=meta["method"],
            class_word=meta.get("class_word"),
            prompt_template=meta["prompt_template"],
            base_model=meta.get("base_model"),
            width=meta["width"],
            num_vectors=meta["num_vectors"],
            meta=meta,
        )

    @property
    def steps_text(self) -> str:
        """How many steps it learned, for people: "200 steps", or "50 of 200 steps: ..." when learn's
        stopping rule ended it early."""
        steps, ran = self.meta.get("steps"), self.meta.get("steps_run")
        if isinstance(ran, int) and isinstance(steps, int) and ran < steps:
            return f"{ran} of {steps} steps: its maps on the photos had settled"
        return f"{steps} steps"

    @property
    def sub_tokens(self) -> list[str]:
        """``["<mymug>", "<mymug>_1", ...]``: the tokens that stand for the concept."""
        return sub_tokens(self.token, self.num_vectors)

    def embeddings(self) -> torch.Tensor:
        """The learned rows, ``(K, width)`` fp32."""
        token, rows = load_embeds(self.path / EMBEDS_FILE)
        check_rows(rows, self.path / EMBEDS_FILE, self.width)
        if rows.shape[0] != self.num_vectors:
            raise ConceptError(
                f"{self.path / EMBEDS_FILE} holds {rows.shape[0]} vectors, but concept.json says {self.num_vectors}",
                hint="the folder was edited by hand: learn or import the concept again",
            )
        # a renamed or copied folder keeps the token it was learned as: that one is fine too
        if token is not None and token not in (self.token, self.meta.get("token")):
            raise ConceptError(
                f"{self.path / EMBEDS_FILE} holds token {token}, but concept.json says {self.token}",
                hint="the folder was edited by hand: learn or import the concept again",
            )
        return rows

    def prompt(self, template: str | None = None, *, expand: bool = False) -> str:
        """The find prompt with the token filled in (``"a photo of a <mymug> mug"``); ``expand``
        writes all K sub-tokens instead (``"a photo of a <mymug> <mymug>_1 mug"``), as diffusers'
        ``maybe_convert_prompt`` does."""
        text = " ".join(self.sub_tokens) if expand else self.token
        return fill_template(template or self.prompt_template, text, self.class_word)

    def check_fits(self, pipe) -> None:
        """Raise :class:`ConceptError` when the pipeline's text encoder has another width."""
        width = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
        if width != self.width:
            raise ConceptError(
                f"concept {self.token} was learned on a text encoder of width {self.width} "
                f"({self.base_model or 'unknown model'}), but this model's is {width}",
                hint=f"learn it again on this model: personaseg learn PHOTOS --token {shlex.quote(self.token)} --model M",
            )
        self.check_model(str(getattr(pipe, "name_or_path", "") or ""))

    def check_model(self, here: str | None) -> None:
        """Raise :class:`ConceptError` when ``here`` (a model id or path) is not the model the
        concept was learned on; a concept that records no model (imported) fits any."""
        from ..models import same_model

        known = [str(m) for m in (self.base_model, self.meta.get("base_model_path")) if m]
        if not known or not here or any(same_model(here, m) for m in known):
            return
        if Path(here).name in {Path(m).name for m in known}:  # the same folder reached by another path
            return
        raise ConceptError(
            f"concept {self.token} was learned on {self.base_model}, not on {here}",
            hint=f"leave --model out (a concept's own model is the default) or use --model {shlex.quote(self.base_model)}; "
            f"or learn it again on {here}",
        )

    def apply(self, pipe) -> list[str]:
        """Load the concept onto a ``StableDiffusionPipeline``; return its sub-tokens.

        Idempotent: a pipe that already carries this concept is left as is. Raises
        :class:`ConceptError` on a width mismatch or when another embedding holds the token.
        """
        self.check_fits(pipe)
        rows = self.embeddings()
        subs = self.sub_tokens
        vocab = pipe.tokenizer.get_vocab()
        present = [t in vocab for t in subs]
        if all(present):
            self._check_loaded(pipe, rows, [vocab[t] for t in subs])
        elif any(present):
            raise ConceptError(
                f"the pipeline has a different {self.token} loaded ({sum(present)} of {len(subs)} sub-tokens)",
                hint="load the concept on a fresh pipeline, or unload the other one first",
            )
        else:
            with _quiet_loaders():
                pipe.load_textual_inversion(str(self.path / EMBEDS_FILE), token=self.token)
        if self.method == "lora":
            self._apply_lora(pipe)
        return subs

    def _check_loaded(self, pipe, rows: torch.Tensor, ids: list[int]) -> None:
        weight = pipe.text_encoder.get_input_embeddings().weight
        have = weight[torch.tensor(ids, device=weight.device)].detach().float().cpu()
        tol = 1e-6 if weight.dtype == torch.float32 else 1e-2
        if not torch.allclose(have, rows, atol=tol, rtol=tol):
            raise ConceptError(
                f"the pipeline already has another embedding for {self.token}",
                hint="load the concept on a fresh pipeline",
            )

    def _apply_lora(self, pipe) -> None:
        cross = getattr(pipe.unet.config, "cross_attention_dim", None)
        want = self.meta.get("cross_attention_dim")
        if want is not None and cross is not None and int(want) != int(cross):
            raise ConceptError(
                f"LoRA concept {self.token} was learned on a UNet with cross-attention width {want}, "
                f"but this model's is {cross}",
                hint=f"learn it again on this model: personaseg learn PHOTOS --token {shlex.quote(self.token)} --method lora",
            )
        adapters = pipe.get_list_adapters() if hasattr(pipe, "get_list_adapters") else {}
        if any(self.name in names for names in adapters.values()):
            return
        with _quiet_loaders():
            pipe.load_lora_weights(str(self.path), weight_name=LORA_FILE, adapter_name=self.name)
