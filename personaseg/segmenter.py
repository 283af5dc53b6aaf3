"""The segmenter: encode an image once, then find phrases and concepts in it cheaply.

>>> seg = Segmenter.from_pretrained("toy")
>>> seg.set_image("scene.png")          # VAE encode + noise draws, paid once
>>> r = seg.find("circle")              # one conditional UNet pass per draw, cut after the last read layer
>>> r.mask.shape, r.presence
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import t2m
from .capture import AttentionCapture, QueryKey
from .config import DEFAULT_PROMPT, FindConfig, build_config, find_config
from .errors import ConceptError, PersonasegWarning, PhraseError
from .images import Geometry, load_image, prepare, restore, to_rgb
from .masks import strongest_region
from .layers import layer_map_for
from .models import ModelCard, load_pipeline
from .prompts import semantic_prompt


CONCEPT = re.compile(r"<[^<>|\s]+>")  # a learned concept in a phrase or prompt ("<mymug>"; not "<|endoftext|>")


def concept_model(texts: list[str | None], concepts_dir: Path | None = None) -> str | None:
    """The model the first learned concept named in ``texts`` (phrases, labels, prompts) was learned
    on, from its concept.json: what a command loads when no model is named. None when no concept
    is named or it records no model (imported); an unknown concept is a :class:`ConceptError`."""
    from .concepts import ConceptStore

    store = ConceptStore(concepts_dir)
    for text in texts:
        for name in CONCEPT.findall(text or ""):
            model = store.get(name).base_model  # an unknown concept: one line now, not after a model load
            if model:
                return model
    return None


class PresenceWarning(PersonasegWarning):
    """A concept's presence reference does not match this find's settings: not applied."""


@dataclass
class FindResult:
    """One phrase found in one image (arrays at the image's size and displayed orientation)."""

    phrase: str  # as asked ("mug", "<mymug>")
    prompt: str  # the prompt the UNet saw
    mask: np.ndarray  # (H, W) bool
    scores: np.ndarray  # (H, W) float32, the refined map S' in [0, 1]
    presence: float  # peak of the un-normalised cross-attention map (see ``Segmenter.find``)
    found: bool  # False below config.min_presence / min_relative_presence (then the mask is empty)
    relative_presence: float | None = None  # a concept's presence / its presence on its own photos
    timings: dict[str, float] = field(default_factory=dict)  # seconds

    @property
    def area(self) -> float:
        """Fraction of the image covered by the mask."""
        return float(self.mask.mean())


@dataclass
class SegmentResult:
    """Several labels at once (spec step 7): 0 = background, i+1 = ``labels[i]``."""

    labels: list[str]
    prompt: str
    label_map: np.ndarray  # (H, W) uint8
    scores: np.ndarray  # (P+1, H, W) float32, background first
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ExplainResult:
    """Per-token heat maps of a prompt on the image (cross-attention, not refined)."""

    prompt: str
    tokens: list[str]
    maps: np.ndarray  # (T, H, W) float32 in [0, 1]


@dataclass
class _Attention:
    """What one prompt's UNet passes left: cross maps per module, self q/k, grids."""

    cross: list[torch.Tensor]  # each (D, N_l, T)
    grids: list[tuple[int, int]]  # (h_l, w_l) per cross module
    self_qk: QueryKey | None  # (D, heads, N, d)
    self_grid: tuple[int, int] | None
    seconds: float


class Segmenter:
    """T2M on one diffusers Stable Diffusion pipeline, caching the image and text encodings."""

    def __init__(self, pipe, card: ModelCard | None = None, config: FindConfig | None = None,
                 concepts_dir: Path | None = None):
        from diffusers import DDPMScheduler

        self.pipe = pipe
        self.card = card or ModelCard(model_id=getattr(pipe, "name_or_path", "?"))
        config = config or FindConfig()
        # fields left None are the model's to decide (e.g. the toy model's native size)
        model_fill = {k: v for k, v in self.card.find_defaults.items() if getattr(config, k, 0) is None}
        self.config = build_config(FindConfig, vars(config), model_fill, source="model card")
        if self.config.prompt is None:
            self.config.prompt = DEFAULT_PROMPT
        if self.config.refine is None:
            self.config.refine = True  # the paper's method
        if self.config.outline is None:
            self.config.outline = "token"  # the paper's: a learned token is read like any other phrase
        self.layer_map = layer_map_for(
            pipe.unet, self.config.cross_layers, self.config.self_layer, self.card.layer_map
        )
        self.concepts_dir = concepts_dir
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # the forward process
        unet = pipe.unet
        self._cross = self.layer_map.cross_modules_with_factor(unet)  # [(module, grid factor)]
        self._self = None
        if self.config.refine and self.layer_map.self_ is not None:
            self._self = (self.layer_map.self_modules(unet)[0], self.layer_map.self_.factor)
        downs = sum(1 for b in unet.down_blocks if getattr(b, "downsamplers", None))
        self.multiple = pipe.vae_scale_factor * 2**downs  # padding multiple (64 for SD)
        self.unet_calls = 0  # UNet forwards run, for tests and benchmarks
        self._warned: set = set()  # concepts already warned about (a mismatched presence reference, no class word)
        self._image: Any = None
        self._geom: Geometry | None = None
        self._noisy: torch.Tensor | None = None
        self._attn: dict[tuple[str, str | None], _Attention] = {}
        self._text: dict[str, torch.Tensor] = {}
        self._concepts: dict[str, tuple[Any, list[str]]] = {}
        self._encode_s = 0.0

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, device=None, dtype=None,
                        config: FindConfig | None = None, preset: str | None = None,
                        recipe: str | Path | None = None, concepts_dir: Path | None = None,
                        **overrides) -> "Segmenter":
        """Load ``model`` (hub id, folder, .safetensors, "toy") and build a segmenter.

        ``config`` is used as given; otherwise it is built from the preset, recipe and keyword
        overrides (``draws=1``, ``tau=0.35``, ...).
        """
        if config is None:
            config = find_config(preset, recipe, **overrides)
        pipe, card = load_pipeline(model, device, dtype)
        return cls(pipe, card, config, concepts_dir)

    # ------------------------------------------------------------------ image
    @torch.inference_mode()
    def set_image(self, image) -> None:
        """Encode ``image`` (path or PIL) and draw the noisy latents; clears the per-prompt cache."""
        start = time.perf_counter()
        cfg, pipe = self.config, self.pipe
        img = load_image(image) if isinstance(image, (str, Path)) else to_rgb(image)
        x, geom = prepare(img, cfg.long_side, self.multiple, cfg.pad_rgb)  # (1, 3, H, W)
        vae = pipe.vae
        gen = torch.Generator("cpu").manual_seed(cfg.seed)
        x = x.to(vae.device, vae.dtype)
        latent = vae.encode(x).latent_dist.sample(generator=gen) * vae.config.scaling_factor
        # (1, C, h, w) -> D draws; noise drawn on the CPU so a seed means the same on every device
        noise = torch.randn((cfg.draws, *latent.shape[1:]), generator=gen).to(latent.device, latent.dtype)
        t = torch.full((cfg.draws,), cfg.timestep, dtype=torch.long, device=latent.device)
        self._noisy = self.scheduler.add_noise(latent.expand(cfg.draws, -1, -1, -1), noise, t)
        self._image, self._geom = img, geom
        self._attn.clear()
        self._encode_s = time.perf_counter() - start

    def _require_image(self) -> None:
        if self._noisy is None:
            raise RuntimeError("no image set: call set_image(image) before find/segment/explain")

    # ------------------------------------------------------------------ text
    def _resolve(self, phrase: str, prompt: str | None) -> tuple[str, str, Any]:
        """(prompt with multi-vector tokens expanded, phrase text in it, the concept or None)."""
        return self._resolve_all(phrase, prompt)[:3]

    def _resolve_all(self, phrase: str, prompt: str | None) -> tuple[str, str, Any, str | None]:
        """(prompt with every concept's multi-vector tokens expanded, phrase text in it, the concept
        the phrase names or None, the LoRA adapter to switch on or None)."""
        phrase = " ".join(phrase.split())
        if not phrase:
            raise PhraseError("the phrase is empty", hint='give a word such as "mug" or a concept like "<mymug>"')
        template = prompt or self.config.prompt
        if "{}" not in template:
            raise PhraseError(f"prompt {template!r} has no '{{}}' for the phrase", hint='e.g. "a photo of a {}"')
        template, others = self._expand_concepts(template)  # a concept written into the prompt itself
        if phrase.startswith("<") and phrase.endswith(">") and phrase.count("<") == 1:  # one concept: its own prompt
            concept, tokens = self.load_concept(phrase)
            expanded = concept.prompt(template if prompt else None, expand=True)  # all K sub-tokens, {class} filled
            phrase_text = " ".join(tokens)
        else:
            concept = None
            phrase_text, inside = self._expand_concepts(phrase)  # "<mymug> handle": a concept inside a phrase
            expanded, others = template.format(phrase_text), others + inside
        return expanded, phrase_text, concept, self._one_adapter([concept, *others])

    def _one_adapter(self, concepts: list[Any]) -> str | None:
        """The LoRA adapter of the LoRA concept among ``concepts`` (None: the base model); one UNet
        pass carries one adapter, so two LoRA concepts in one prompt are refused."""
        lora = {c.name: c for c in concepts if c is not None and c.method == "lora"}
        if len(lora) > 1:
            raise PhraseError(f"{len(lora)} LoRA concepts in one prompt ({', '.join(c.token for c in lora.values())})",
                              hint="use one LoRA concept at a time (Textual Inversion concepts mix freely)")
        return self._adapter(next(iter(lora.values()), None))

    def _expand_concepts(self, text: str) -> tuple[str, list[Any]]:
        """``text`` with each learned concept named in it (``<mymug>``) loaded and written as its K
        sub-tokens, as the text encoder reads it; and those concepts. Without this the tokenizer
        would spell an unknown ``<mymug>`` out letter by letter."""
        concepts = []

        def sub(match: re.Match) -> str:
            concept, tokens = self.load_concept(match.group(0))
            concepts.append(concept)
            return " ".join(tokens)

        return CONCEPT.sub(sub, text), concepts

    @staticmethod
    def _adapter(concept) -> str | None:
        """The LoRA adapter a concept switches on (None: the base model)."""
        return concept.name if concept is not None and concept.method == "lora" else None

    def load_concept(self, name_or_concept) -> tuple[Any, list[str]]:
        """Load a learned concept onto the model once; returns (concept, its sub-tokens)."""
        try:
            from .concepts import ConceptStore
        except ImportError:  # pragma: no cover - concepts not installed
            raise ConceptError(
                f"unknown concept {name_or_concept}",
                hint=f"learn one with `personaseg learn PHOTOS --token {name_or_concept}`",
            ) from None
        if isinstance(name_or_concept, str):
            loaded = self._concepts.get(name_or_concept.strip().strip("<>"))
            if loaded is not None:
                return loaded
            concept = ConceptStore(self.concepts_dir).get(name_or_concept)
        else:
            concept = name_or_concept
        if concept.name not in self._concepts:
            tokens = concept.apply(self.pipe)
            self._concepts[concept.name] = (concept, tokens)
            self._attn.clear()  # the text encoder or UNet changed
            self._text.clear()
        return self._concepts[concept.name]

    def _positions(self, prompt: str, phrases: list[str]) -> list[list[int]]:
        """Token positions of each phrase in the tokenized prompt (in order of appearance)."""
        tok = self.pipe.tokenizer
        ids = tok(prompt, truncation=False).input_ids
        if len(ids) > tok.model_max_length:
            raise PhraseError(
                f"prompt is {len(ids)} tokens, the text encoder takes {tok.model_max_length}",
                hint="use a shorter prompt or fewer labels",
            )
        out, start = [], 1
        for phrase in phrases:
            pid = tok(phrase, add_special_tokens=False).input_ids
            hit = next((i for i in range(start, len(ids) - len(pid) + 1) if ids[i:i + len(pid)] == pid), None)
            if not pid or hit is None:
                raise PhraseError(f"phrase {phrase!r} is not in the prompt {prompt!r}",
                                  hint="the prompt template must contain the phrase ({})")
            out.append(list(range(hit, hit + len(pid))))
            start = hit + len(pid)
        return out

    @torch.inference_mode()
    def _encode_text(self, prompt: str) -> torch.Tensor:
        if prompt not in self._text:
            tok, enc = self.pipe.tokenizer, self.pipe.text_encoder
            ids = tok(prompt, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids
            self._text[prompt] = enc(ids.to(enc.device))[0]  # (1, T, C)
        return self._text[prompt]

    # ------------------------------------------------------------------ attention
    def _set_adapter(self, adapter: str | None) -> None:
        if not any(c.method == "lora" for c, _ in self._concepts.values()):
            return
        if adapter is None:
            self.pipe.disable_lora()
        else:
            self.pipe.enable_lora()
            self.pipe.set_adapters(adapter)

    @torch.inference_mode()
    def _attention(self, prompt: str, adapter: str | None) -> _Attention:
        """Run the D conditional UNet forwards for ``prompt`` (cached per prompt and adapter)."""
        key = (prompt, adapter)
        if key in self._attn:
            return self._attn[key]
        self._require_image()
        start = time.perf_counter()
        cfg, unet = self.config, self.pipe.unet
        self._set_adapter(adapter)
        text = self._encode_text(prompt).to(unet.dtype)
        noisy = self._noisy
        cap = AttentionCapture(unet, cross=[m for m, _ in self._cross],
                               self_=[self._self[0]] if self._self else [])
        with cap:
            for i in range(0, cfg.draws, cfg.draw_batch):
                lat = noisy[i:i + cfg.draw_batch]
                t = torch.full((len(lat),), cfg.timestep, dtype=torch.long, device=lat.device)
                cap.run(lambda: unet(lat, t, encoder_hidden_states=text.expand(len(lat), -1, -1)))
        self.unet_calls += cap.calls
        h, w = noisy.shape[-2:]
        grid = lambda f: (h // f, w // f)  # noqa: E731 - padding makes these exact
        att = _Attention(
            cross=[cap.cross(m) for m, _ in self._cross],
            grids=[grid(f) for _, f in self._cross],
            self_qk=cap.self_attention(self._self[0]) if self._self else None,
            self_grid=grid(self._self[1]) if self._self else None,
            seconds=time.perf_counter() - start,
        )
        cap.clear()
        self._attn[key] = att
        return att

    def _phrase_scores(self, att: _Attention, positions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined scores ``(P, h, w)`` averaged over draws, and presence ``(P,)``."""
        cfg = self.config
        finest = t2m.finest_grid(att.grids)
        out_grid = att.self_grid or finest

        def maps(grid):
            return torch.stack([t2m.cross_map(att.cross, att.grids, grid, p) for p in positions], dim=1)  # (D, P, h, w)

        # presence on the finest cross grid whatever the refinement's grid: upsampling lowers peaks, and
        # learn's presence_ref is read without refinement
        s = maps(finest)
        presence = s.mean(dim=0).flatten(1).max(dim=1).values  # (P,)
        if tuple(out_grid) != finest:
            s = maps(out_grid)
        if att.self_qk is not None:
            s = t2m.refine(att.self_qk, s, cfg.tau_box, cfg.quantize_box)
        else:
            s = t2m.minmax(s)
        return s.mean(dim=0), presence  # (D, P, h, w) -> (P, h, w)

    def presence_settings(self, prompt: str) -> dict[str, Any]:
        """What the scale of the presence score depends on: a concept's ``presence_ref`` only
        compares with a presence read under the same settings."""
        cfg = self.config
        return {"timestep": cfg.timestep, "cross": self.layer_map.describe()["cross"],
                "long_side": cfg.long_side, "prompt": prompt}

    def _same_presence_settings(self, concept, prompt: str) -> bool:
        """Whether ``concept``'s presence reference was measured as this find reads presence (if not,
        and the rule is on, warn once per concept). Concepts learned before the settings were
        recorded count as measured with the defaults."""
        at, now = concept.meta.get("presence_ref_at"), self.presence_settings(prompt)
        if at is None or at == now:
            return True
        if self.config.min_relative_presence is not None and concept.token not in self._warned:
            self._warned.add(concept.token)
            changed = ", ".join(k for k, v in now.items() if at.get(k) != v)
            warnings.warn(
                f"{concept.token}: its presence reference was measured with other find settings ({changed}); "
                "min_relative_presence is not applied (learn it again with these settings, or use its own)",
                PresenceWarning, stacklevel=3,
            )
        return False

    # ------------------------------------------------------------------ public
    def find(self, phrase: str, prompt: str | None = None) -> FindResult:
        """Outline ``phrase`` (a word, or a learned concept ``<name>``) in the current image.

        ``prompt`` is a template with ``{}`` for the phrase (default: the config's, or for a
        concept, its own). ``presence`` is the peak, over the grid, of the phrase's raw
        cross-attention probability (averaged over layers and draws, before min-max
        normalisation): low when the phrase's tokens draw little attention anywhere.
        """
        self._require_image()
        start = time.perf_counter()
        text, phrase_text, concept, adapter = self._resolve_all(phrase, prompt)
        att = self._attention(text, adapter)
        by_class = self._class_word_pass(concept)
        t0 = time.perf_counter()
        scores, presence = self._phrase_scores(att, self._positions(text, [phrase_text]))
        picker = None  # which region is the object: where the token is strongest
        if by_class is not None:
            picker = restore(scores, self._geom)[0].cpu().numpy()
            class_scores, _ = self._phrase_scores(*by_class)
            # geometric mean: high only where the token (which object) and the class word (its shape) agree
            scores = t2m.minmax((scores.clamp_min(0) * class_scores.clamp_min(0)).sqrt())
        full = restore(t2m.label_scores(scores, self.config.tau), self._geom)  # (2, H, W)
        mask = self._labels(full) == 1
        score_map = restore(scores, self._geom)[0].clamp(0, 1).cpu().numpy().astype(np.float32)
        keep = self.config.keep
        if keep == "strongest" or (keep == "auto" and concept is not None):
            # auto: a learned concept is one object; a phrase may name several ("mug": every mug)
            mask = strongest_region(mask, score_map if picker is None else picker)
        found = self.config.min_presence is None or float(presence[0]) >= self.config.min_presence
        # relative to the concept's presence on its own photos (measured by learn), when known
        # and measured the way this find reads presence (its scale depends on t, blocks, size, prompt)
        ref = concept.meta.get("presence_ref") if concept is not None else None
        if ref and not self._same_presence_settings(concept, text):
            ref = None
        relative = float(presence[0]) / ref if ref else None
        if relative is not None and self.config.min_relative_presence is not None:
            found = found and relative >= self.config.min_relative_presence
        if not found:
            mask = np.zeros_like(mask)
        return FindResult(
            phrase=phrase, prompt=text, mask=mask,
            scores=score_map,
            presence=float(presence[0]), found=found, relative_presence=relative,
            timings={"encode_s": self._encode_s, "unet_s": att.seconds + (by_class[0].seconds if by_class else 0.0),
                     "t2m_s": time.perf_counter() - t0, "find_s": time.perf_counter() - start},
        )

    def _class_word_pass(self, concept) -> tuple[_Attention, list[list[int]]] | None:
        """For ``outline = "with-class"``: the attention and positions of ``concept``'s class word on
        its own prompt and the base model (the pass a find of the word runs, so the two share it);
        None for a phrase, another outline, or a concept without a class word (warned once)."""
        if concept is None or self.config.outline != "with-class":
            return None
        if not concept.class_word:
            if ("outline", concept.token) not in self._warned:
                self._warned.add(("outline", concept.token))
                warnings.warn(f"{concept.token} has no class word: outline 'with-class' draws it with its own map "
                              "(learn it again with --class-word)", PersonasegWarning, stacklevel=3)
            return None
        class_text, class_phrase, _ = self._resolve(concept.class_word, None)
        return self._attention(class_text, None), self._positions(class_text, [class_phrase])

    def _labels(self, full: torch.Tensor) -> np.ndarray:
        """Argmax of ``(P+1, H, W)`` scores, through the dense CRF when configured."""
        if not self.config.crf:
            return full.argmax(dim=0).cpu().numpy()
        from .masks import dense_crf

        probs = full.clamp_min(1e-6)
        probs = (probs / probs.sum(dim=0, keepdim=True)).cpu().numpy()
        return dense_crf(np.asarray(self._image.convert("RGB")), probs)

    def segment(self, labels: list[str], prompt: str | None = None, background: bool = True) -> SegmentResult:
        """Label every pixel with one of ``labels`` or background (the paper's semantic setting).

        Default prompt: "a photo including <labels>, <background words>, and <last>." (spec);
        ``background=False`` leaves the background words out.
        """
        self._require_image()
        labels = [" ".join(x.split()) for x in labels if x.strip()]
        if not labels:
            raise PhraseError("no labels given", hint='e.g. --labels "cat,dog,sofa"')
        start = time.perf_counter()
        expanded, concepts = zip(*(self._expand_concepts(x) for x in labels))  # learned concepts among the labels
        concepts = [c for found in concepts for c in found]
        if prompt is None:
            prompt, phrases = semantic_prompt(list(expanded), background=background)
        else:
            prompt, in_prompt = self._expand_concepts(prompt)
            phrases, concepts = list(expanded), concepts + in_prompt
        positions = self._positions(prompt, phrases)
        att = self._attention(prompt, self._one_adapter(concepts))
        scores, _ = self._phrase_scores(att, positions)
        full = restore(t2m.label_scores(scores, self.config.tau), self._geom)  # (P+1, H, W)
        return SegmentResult(
            labels=labels, prompt=prompt, label_map=self._labels(full).astype(np.uint8),
            scores=full.cpu().numpy().astype(np.float32),
            timings={"unet_s": att.seconds, "segment_s": time.perf_counter() - start},
        )

    def explain(self, phrase: str, prompt: str | None = None) -> ExplainResult:
        """Heat maps of every token of the prompt built around ``phrase`` (cross-attention only)."""
        self._require_image()
        text, _, _, adapter = self._resolve_all(phrase, prompt)
        tok = self.pipe.tokenizer
        ids = tok(text, truncation=True, max_length=tok.model_max_length).input_ids
        positions = list(range(1, len(ids) - 1))  # without start and end tokens
        att = self._attention(text, adapter)
        grid = max(att.grids, key=lambda g: g[0] * g[1])
        maps = torch.stack([t2m.cross_map(att.cross, att.grids, grid, [p]).mean(dim=0) for p in positions])
        maps = restore(t2m.minmax(maps), self._geom).clamp(0, 1)  # (T, H, W)
        return ExplainResult(text, tok.convert_ids_to_tokens([ids[p] for p in positions]),
                             maps.cpu().numpy().astype(np.float32))

    def track(self, frames, phrase: str, prompt: str | None = None, config=None):
        """Follow ``phrase`` through ``frames`` (images, paths or :class:`personaseg.video.Frame`s, e.g.
        ``open_clip(path).frames()``); yields a :class:`personaseg.track.FrameResult` per frame, streaming.

        ``config`` is a :class:`personaseg.track.TrackConfig` (default: temporal mode, see
        :mod:`personaseg.track`). Each frame is found by :meth:`find`; the image set before is dropped.
        """
        from .track import track

        return track(self, frames, phrase, prompt, config)
