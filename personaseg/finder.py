"""The find engine: encode an image once, then find phrases and concepts in it cheaply.

:class:`Finder` works on a loaded pipeline and a concept store it is handed (see
:mod:`personaseg.loaded`); :class:`personaseg.segmenter.Segmenter` is the same with model
loading and the user's concept store. Learn's presence calibration runs a ``Finder``, so the
concepts package depends on find and never the other way round.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from . import attention, policy, t2m
from .attention import Attention, EncodedImage
from .config import FindConfig, resolve_find
from .errors import PersonasegWarning, PhraseError
from .images import load_image, prepare, restore, to_rgb
from .layers import layer_map_for
from .loaded import LoadedConcepts
from .masks import strongest_region
from .models import ModelCard
from .prompts import semantic_prompt
from .results import ExplainResult, FindResult, SegmentResult
from .tokens import phrase_positions, prompt_tokens


class Finder:
    """T2M on one diffusers Stable Diffusion pipeline, caching the image and text encodings.

    ``store`` gives learned concepts by name (a ConceptStore or a function ``name -> Concept``;
    None: only concepts handed to :meth:`load_concept`). ``config`` is read-only once built: change
    settings for a while with :meth:`with_config`.
    """

    def __init__(self, pipe, card: ModelCard | None = None, config: FindConfig | None = None, *, store=None):
        from diffusers import DDPMScheduler

        self.pipe = pipe
        self.card = card or ModelCard(model_id=getattr(pipe, "name_or_path", "?"))
        self.config = resolve_find(config, self.card)  # fields left None: the card's, else the paper's
        self.layer_map = layer_map_for(
            pipe.unet, self.config.cross_layers, self.config.self_layer, self.card.layer_map
        )
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # the forward process
        unet = pipe.unet
        self._cross = self.layer_map.cross_modules_with_factor(unet)  # [(module, grid factor)]
        self._self = None
        if self.config.refine and self.layer_map.self_ is not None:
            self._self = (self.layer_map.self_modules(unet)[0], self.layer_map.self_.factor)
        downs = sum(1 for b in unet.down_blocks if getattr(b, "downsamplers", None))
        self.multiple = pipe.vae_scale_factor * 2**downs  # padding multiple (64 for SD)
        self.unet_calls = 0  # UNet forwards run, for tests and benchmarks
        self.concepts = LoadedConcepts(pipe, store, on_change=self.clear_cache)
        self._warned: set = set()  # concepts already warned about (a mismatched presence reference, no class word)
        self._frame: EncodedImage | None = None  # the current image (set_image, use)
        self._attn: dict[tuple[str, str | None], Attention] = {}
        self._text: dict[str, torch.Tensor] = {}

    @contextmanager
    def with_config(self, **changes) -> Iterator[FindConfig]:
        """The config with ``changes`` (``crf=True``, ``draws=1``) until the block ends, restored
        even on error. For settings read after the image is encoded (the mask rules, draws of the
        next ``set_image``); the layers and the refinement's block are fixed when the finder is built."""
        old = self.config
        self.config = dataclasses.replace(old, **changes)
        try:
            yield self.config
        finally:
            self.config = old

    def clear_cache(self) -> None:
        """Drop the cached UNet passes and text encodings: after a concept is applied (the text encoder
        or UNet changed), or after changing the model's weights yourself. The image stays set."""
        self._attn.clear()
        self._text.clear()

    # ------------------------------------------------------------------ image
    def set_image(self, image) -> None:
        """Encode ``image`` (path or PIL) and draw the noisy latents; clears the per-prompt cache."""
        self.use(self.encode(image))

    @torch.inference_mode()
    def encode(self, image) -> EncodedImage:
        """``image`` (path or PIL) encoded with the config's draws and seed, not made the current image."""
        start = time.perf_counter()
        cfg, vae = self.config, self.pipe.vae
        img = load_image(image) if isinstance(image, (str, Path)) else to_rgb(image)
        x, geom = prepare(img, cfg.long_side, self.multiple, cfg.pad_rgb)  # (1, 3, H, W)
        noisy = attention.noisy_latents(vae, self.scheduler, x, cfg.seed, cfg.draws, cfg.timestep)
        return EncodedImage(img, geom, noisy, time.perf_counter() - start)

    def use(self, encoded: EncodedImage, passes: dict | None = None) -> None:
        """Make ``encoded`` the current image. ``passes`` ((prompt, adapter) -> Attention run on its
        noisy latents, e.g. by :meth:`attend`) fill the per-prompt cache: find reads them, no UNet."""
        self._frame = encoded
        self._attn.clear()
        self._attn.update(passes or {})

    def clear_image(self) -> None:
        """Drop the current image and its cached passes (find needs a set_image again)."""
        self._frame = None
        self._attn.clear()

    @property
    def noisy_latents(self) -> torch.Tensor | None:
        """The image's noisy latents ``(D, C, h, w)`` at the config's timestep (None before set_image)."""
        return None if self._frame is None else self._frame.noisy

    def _require_image(self) -> EncodedImage:
        if self._frame is None:
            raise RuntimeError("no image set: call set_image(image) before find/segment/explain")
        return self._frame

    # ------------------------------------------------------------------ text
    def _resolve(self, phrase: str, prompt: str | None) -> tuple[str, str, Any, str | None]:
        """(prompt with every concept's multi-vector tokens expanded, phrase text in it, the concept
        the phrase names or None, the LoRA adapter to switch on or None)."""
        phrase = " ".join(phrase.split())
        if not phrase:
            raise PhraseError("the phrase is empty", hint='give a word such as "mug" or a concept like "<mymug>"')
        template = prompt or self.config.prompt
        if "{}" not in template:
            raise PhraseError(f"prompt {template!r} has no '{{}}' for the phrase", hint='e.g. "a photo of a {}"')
        template, others = self.concepts.expand(template)  # a concept written into the prompt itself
        if phrase.startswith("<") and phrase.endswith(">") and phrase.count("<") == 1:  # one concept: its own prompt
            concept, tokens = self.load_concept(phrase)
            expanded = concept.prompt(template if prompt else None, expand=True)  # all K sub-tokens, {class} filled
            phrase_text = " ".join(tokens)
        else:
            concept = None
            phrase_text, inside = self.concepts.expand(phrase)  # "<mymug> handle": a concept inside a phrase
            expanded, others = template.format(phrase_text), others + inside
        return expanded, phrase_text, concept, self.concepts.one_adapter([concept, *others])

    def load_concept(self, name_or_concept) -> tuple[Any, list[str]]:
        """Load a learned concept onto the model once; returns (concept, its sub-tokens)."""
        return self.concepts.load(name_or_concept)

    def positions(self, prompt: str, phrases: list[str]) -> list[list[int]]:
        """Token positions of each phrase in the tokenized prompt (in order of appearance)."""
        return phrase_positions(self.pipe.tokenizer, prompt, phrases)

    @torch.inference_mode()
    def _encode_text(self, prompt: str) -> torch.Tensor:
        if prompt not in self._text:
            tok, enc = self.pipe.tokenizer, self.pipe.text_encoder
            ids = tok(prompt, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids
            self._text[prompt] = enc(ids.to(enc.device))[0]  # (1, T, C)
        return self._text[prompt]

    # ------------------------------------------------------------------ attention
    def passes(self) -> list[tuple[str, str | None]]:
        """The (prompt, adapter) UNet passes cached for the current image, in the order they ran."""
        return list(self._attn)

    def _attention(self, prompt: str, adapter: str | None) -> Attention:
        """The config's D draws of the current image through the UNet for ``prompt`` (cached)."""
        key = (prompt, adapter)
        if key not in self._attn:
            self._attn[key] = self._run(self._require_image().noisy, prompt, adapter, self.config.draws)
        return self._attn[key]

    def attend(self, noisy: torch.Tensor, prompt: str, adapter: str | None = None) -> Attention:
        """The conditional UNet forwards of ``prompt`` (LoRA ``adapter`` on) over all rows of ``noisy``
        ``(D, C, h, w)``, ``draw_batch`` rows a call, uncached: ``track`` runs many frames' draws at once."""
        return self._run(noisy, prompt, adapter, len(noisy))

    @torch.inference_mode()
    def _run(self, noisy: torch.Tensor, prompt: str, adapter: str | None, draws: int) -> Attention:
        start = time.perf_counter()
        cfg, unet = self.config, self.pipe.unet
        self.concepts.switch(adapter)
        text = self._encode_text(prompt).to(unet.dtype)
        att, calls = attention.run(unet, self._cross, self._self, noisy, text, cfg.timestep, draws, cfg.draw_batch)
        self.unet_calls += calls
        att.seconds = time.perf_counter() - start
        return att

    def _phrase_scores(self, att: Attention, positions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined scores ``(P, h, w)`` averaged over draws, and the raw maps presence is read on ``(P, h, w)``."""
        return attention.phrase_scores(att, positions, self.config.tau_box, self.config.quantize_box)

    def presence_settings(self, prompt: str, with_class: bool = False) -> dict[str, Any]:
        """What the scale of the presence score depends on (:func:`personaseg.policy.presence_settings`);
        ``with_class``: read on the concept's and its class word's maps together (outline "with-class")."""
        return policy.presence_settings(self.config, self.layer_map.describe()["cross"], prompt, with_class)

    # ------------------------------------------------------------------ public
    def find(self, phrase: str, prompt: str | None = None) -> FindResult:
        """Outline ``phrase`` (a word, or a learned concept ``<name>``) in the current image.

        ``prompt`` is a template with ``{}`` for the phrase (default: the config's, or for a
        concept, its own). ``presence`` is the peak, over the grid, of the phrase's raw
        cross-attention probability (averaged over layers and draws, before min-max
        normalisation): low when the phrase's tokens draw little attention anywhere. A concept
        drawn with its class word (outline ``"with-class"``) is also read with it:
        ``joint_presence``, the peak of the two raw maps' geometric mean, is what its relative
        presence compares with learn's same reading on its photos.
        """
        frame = self._require_image()
        start, cfg = time.perf_counter(), self.config
        text, phrase_text, concept, adapter = self._resolve(phrase, prompt)
        att = self._attention(text, adapter)
        by_class = self._class_word_pass(concept)
        t0 = time.perf_counter()
        scores, raw = self._phrase_scores(att, self.positions(text, [phrase_text]))
        presence = float(t2m.presence(raw)[0])
        joint = picker = None  # presence read with the class word; which region is the object
        if by_class is not None:
            class_scores, class_raw = self._phrase_scores(*by_class)
            joint = float(t2m.joint_presence(raw, class_raw)[0])  # where the token and the class word agree
            picker = restore(scores, frame.geom)[0].cpu().numpy()  # the region where the token is strongest
            scores = policy.with_class(scores, class_scores)
        full = restore(t2m.label_scores(scores, cfg.tau), frame.geom)  # (2, H, W)
        mask = self._labels(full) == 1
        score_map = restore(scores, frame.geom)[0].clamp(0, 1).cpu().numpy().astype(np.float32)
        if policy.keeps_one_region(cfg.keep, concept):
            mask = strongest_region(mask, score_map if picker is None else picker)
        # relative to the concept's presence on its own photos (measured by learn), when known
        # and measured the way this find reads presence (its scale depends on t, blocks, size, prompt)
        ref = policy.reference(concept, self.presence_settings(text, with_class=joint is not None), cfg, self._warned)
        relative, found = policy.verdict(presence, ref, cfg, read=joint)
        if not found:
            mask = np.zeros_like(mask)
        return FindResult(
            phrase=phrase, prompt=text, mask=mask, scores=score_map,
            presence=presence, found=found, relative_presence=relative, joint_presence=joint,
            timings={"encode_s": frame.seconds, "unet_s": att.seconds + (by_class[0].seconds if by_class else 0.0),
                     "t2m_s": time.perf_counter() - t0, "find_s": time.perf_counter() - start},
        )

    def reference_settings(self, name: str) -> dict[str, Any]:
        """The settings a find of concept ``name`` reads its presence with: its ``presence_ref`` counts
        only when measured with these (:func:`personaseg.policy.reference`)."""
        text, _, concept, _ = self._resolve(name, None)
        return self.presence_settings(text, with_class=self._draws_with_class(concept))

    def _draws_with_class(self, concept) -> bool:
        """Whether ``concept`` is drawn (and its presence read) with its class word."""
        return concept is not None and self.config.outline == "with-class" and bool(concept.class_word)

    def _class_word_pass(self, concept) -> tuple[Attention, list[list[int]]] | None:
        """For ``outline = "with-class"``: the attention and positions of ``concept``'s class word on
        its own prompt and the base model (the pass a find of the word runs, so the two share it);
        None for a phrase, another outline, or a concept without a class word (warned once)."""
        if self._draws_with_class(concept):
            class_text, class_phrase, _, _ = self._resolve(concept.class_word, None)
            return self._attention(class_text, None), self.positions(class_text, [class_phrase])
        unwarned = concept is not None and ("outline", concept.token) not in self._warned
        if unwarned and self.config.outline == "with-class":  # a concept without a class word
            self._warned.add(("outline", concept.token))
            warnings.warn(f"{concept.token} has no class word: outline 'with-class' draws it with its own map "
                          "(learn it again with --class-word)", PersonasegWarning, stacklevel=3)
        return None

    def _labels(self, full: torch.Tensor) -> np.ndarray:
        """Argmax of ``(P+1, H, W)`` scores, through the dense CRF when configured."""
        if not self.config.crf:
            return full.argmax(dim=0).cpu().numpy()
        from .masks import dense_crf

        probs = full.clamp_min(1e-6)
        probs = (probs / probs.sum(dim=0, keepdim=True)).cpu().numpy()
        return dense_crf(np.asarray(self._frame.image.convert("RGB")), probs)

    def segment(self, labels: list[str], prompt: str | None = None, background: bool = True) -> SegmentResult:
        """Label every pixel with one of ``labels`` or background (the paper's semantic setting).

        Default prompt: "a photo including <labels>, <background words>, and <last>." (spec);
        ``background=False`` leaves the background words out.
        """
        frame = self._require_image()
        labels = [" ".join(x.split()) for x in labels if x.strip()]
        if not labels:
            raise PhraseError("no labels given", hint='e.g. --labels "cat,dog,sofa"')
        start = time.perf_counter()
        expanded, concepts = zip(*(self.concepts.expand(x) for x in labels))  # learned concepts among the labels
        concepts = [c for found in concepts for c in found]
        if prompt is None:
            prompt, phrases = semantic_prompt(list(expanded), background=background)
        else:
            prompt, in_prompt = self.concepts.expand(prompt)
            phrases, concepts = list(expanded), concepts + in_prompt
        positions = self.positions(prompt, phrases)
        att = self._attention(prompt, self.concepts.one_adapter(concepts))
        scores, _ = self._phrase_scores(att, positions)
        full = restore(t2m.label_scores(scores, self.config.tau), frame.geom)  # (P+1, H, W)
        return SegmentResult(
            labels=labels, prompt=prompt, label_map=self._labels(full).astype(np.uint8),
            scores=full.cpu().numpy().astype(np.float32),
            timings={"unet_s": att.seconds, "segment_s": time.perf_counter() - start},
        )

    def explain(self, phrase: str, prompt: str | None = None) -> ExplainResult:
        """Heat maps of every token of the prompt built around ``phrase`` (cross-attention only)."""
        frame = self._require_image()
        text, _, _, adapter = self._resolve(phrase, prompt)
        positions, tokens = prompt_tokens(self.pipe.tokenizer, text)
        att = self._attention(text, adapter)
        grid = max(att.grids, key=lambda g: g[0] * g[1])
        maps = torch.stack([t2m.cross_map(att.cross, att.grids, grid, [p]).mean(dim=0) for p in positions])
        maps = restore(t2m.minmax(maps), frame.geom).clamp(0, 1)  # (T, H, W)
        return ExplainResult(text, tokens, maps.cpu().numpy().astype(np.float32))
