"""Configuration objects: one dataclass per job, defaults = the T2M paper's settings.

Recipes are TOML files whose keys are a config's fields; they only override. Precedence:
defaults < preset < recipe < explicit overrides (CLI flags). An unknown key is an error. A recipe
is a path or the name of one shipped in ``personaseg/recipes/`` (``"ti-cpu"``, see
:func:`recipe_path`), so an installed package finds its own.

``FindConfig`` lives here; the other jobs' configs live beside their code and are re-exported
(``LearnConfig`` in ``concepts/``, ``BenchConfig`` in ``bench/``, ``ToyTrainConfig`` in
``toyworld/``) so that each subpackage owns its settings.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

C = TypeVar("C")

DEFAULT_PROMPT = "a photo of a {}"  # the find prompt when neither the user nor the model sets one
OUTLINES = ("token", "with-class")  # how a learned concept's map is drawn (FindConfig.outline)
MAX_DRAWS = 1000  # noise draws: 1000 latents of a 1024 px image are 256 MB; the paper uses 1 or 10
MAX_RELATIVE = 100.0  # min_relative_presence: a share of the concept's own presence (0.5 is typical)
MAX_LONG_SIDE = 4096  # px; the paper's rule gives 704..1024
RECIPES_DIR = Path(__file__).parent / "recipes"  # recipes shipped as package data, found by name
# FindConfig fields applied after the attention is read (marked with this metadata): neither learning
# (its contrast reads the card's cross blocks at find's timestep) nor a concept's presence reference
# (read without refinement or the class word's outline, at the card's timestep, size and prompt)
# depends on them; see models.MASK_ONLY_FIND
_MASK = {"mask_only": True}


@dataclass
class FindConfig:
    """Settings of one T2M segmentation. Defaults: the paper's VOC run (``preset="voc"``)."""

    prompt: str | None = None  # template, "{}" = the phrase; None: the model card's, else DEFAULT_PROMPT
    timestep: int = 150  # DDPM timestep the latent is noised to (paper: t = 150)
    draws: int = 10  # D independent noise draws averaged (paper: 10 on VOC, 1 on COCO)
    draw_batch: int = 10  # draws per UNet call; lower it to bound memory
    seed: int = 0  # seeds the VAE posterior sample and the noise draws
    tau_box: float = field(default=0.2, metadata=_MASK)  # box-mask threshold, fraction of max (paper: 0.2 VOC, 0.5 COCO)
    tau: float = field(default=0.5, metadata=_MASK)  # background rule: bg = (2*tau - max S')**2 (paper: 0.5 VOC, 0.35 COCO)
    refine: bool | None = field(default=None, metadata=_MASK)  # self-attention refinement S' = A^2 (B * S); None: on (paper) unless the model card says off
    quantize_box: bool = field(default=True, metadata=_MASK)  # quantise S to uint8 before the box threshold, as the reference
    cross_layers: list[str] | None = None  # override of the layer map's cross-attention blocks
    self_layer: str | None = None  # override of the layer map's self-attention block
    long_side: int | None = None  # None: paper's aspect rule, long side 64*k px (704..1024)
    pad_rgb: tuple[int, int, int] = (123, 117, 104)  # padding colour (paper: ImageNet mean)
    min_presence: float | None = field(default=None, metadata=_MASK)  # below this presence score: "not found", empty mask
    min_relative_presence: float | None = field(default=None, metadata=_MASK)  # a <concept> below this share of its presence on its own photos: not found (skipped if read at other t/blocks/size/prompt)
    crf: bool = field(default=False, metadata=_MASK)  # dense CRF post-processing (needs personaseg[crf])
    keep: str = field(default="auto", metadata=_MASK)  # find: "all" regions, "strongest" (the one holding the peak), auto: strongest for a <concept>
    outline: str | None = field(default=None, metadata=_MASK)  # a <concept>'s map: "token" (its own, the paper's) or "with-class" (geometric mean with its class word's: the token picks, the class word shapes); None: the model card's, else "token"

    def __post_init__(self) -> None:
        if self.prompt is not None and "{}" not in self.prompt:
            raise ConfigError(
                f"prompt template {self.prompt!r} has no '{{}}' placeholder",
                hint='write it like "a photo of a {}"',
            )
        if not 0 <= self.timestep < 1000:
            raise ConfigError(f"timestep {self.timestep} out of range", hint="use 0..999 (paper: 150)")
        for name in ("draws", "draw_batch"):  # the noise of all draws is held at once: D x latent
            if not 1 <= getattr(self, name) <= MAX_DRAWS:
                raise ConfigError(f"{name}={getattr(self, name)} out of range",
                                  hint=f"use 1..{MAX_DRAWS} (paper: 10 draws on VOC, 1 on COCO)")
        for name in ("tau_box", "tau"):  # a NaN fails every comparison: refused here too
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} out of range", hint="use 0..1")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed={self.seed} out of range", hint="use 0 .. 2**63 - 1")
        if self.min_presence is not None and not 0.0 <= self.min_presence <= 1.0:
            raise ConfigError(f"min_presence={self.min_presence} out of range",
                              hint="use 0..1 (presence is an attention probability), or leave it out")
        if self.min_relative_presence is not None and not 0.0 <= self.min_relative_presence <= MAX_RELATIVE:
            raise ConfigError(f"min_relative_presence={self.min_relative_presence} out of range",
                              hint=f"use 0..{MAX_RELATIVE:g} (a share of the concept's presence on its photos, e.g. 0.5)")
        if self.long_side is not None and not 64 <= self.long_side <= MAX_LONG_SIDE:
            raise ConfigError(f"long_side={self.long_side} out of range",
                              hint=f"use 64..{MAX_LONG_SIDE} px, or leave it out for the paper's rule (704..1024)")
        if len(tuple(self.pad_rgb)) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in self.pad_rgb):
            raise ConfigError(f"pad_rgb={self.pad_rgb!r} is not a colour", hint="use three integers 0..255")
        if self.keep not in ("auto", "all", "strongest"):
            raise ConfigError(f"keep={self.keep!r} is not a choice", hint='use "auto", "all" or "strongest"')
        if self.outline not in (None, *OUTLINES):
            raise ConfigError(f"outline={self.outline!r} is not a choice", hint=" or ".join(f'"{o}"' for o in OUTLINES))
        self.pad_rgb = tuple(self.pad_rgb)  # TOML gives lists


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's two settings (spec steps 3, 6, 7).
    "voc": {"tau_box": 0.2, "tau": 0.5, "draws": 10},
    "coco": {"tau_box": 0.5, "tau": 0.35, "draws": 1},
}


def recipe_path(recipe: str | Path) -> Path:
    """Where a recipe is: ``recipe`` itself when that file exists, else the shipped recipe of that
    name (``"ti-cpu"``, ``"ti-cpu.toml"``, or ``"recipes/ti-cpu.toml"`` as the README writes it outside
    the source tree: ``personaseg/recipes/ti-cpu.toml``); anything else missing is one line listing
    the shipped ones."""
    path = Path(recipe).expanduser()
    if path.is_file():
        return path
    shipped = RECIPES_DIR / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    if str(path.parent) in (".", "recipes") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.toml")))
    raise ConfigError(f"recipe {recipe} not found", hint=f"give a TOML file, or a shipped recipe: {names}")


def load_recipe(recipe: str | Path) -> dict[str, Any]:
    """A recipe's settings, from a file or by the name of a shipped recipe (:func:`recipe_path`)."""
    return read_toml(recipe_path(recipe))


def mask_only_fields() -> frozenset[str]:
    """FindConfig's fields applied after the attention is read (marked ``mask_only``)."""
    return frozenset(f.name for f in dataclasses.fields(FindConfig) if f.metadata.get("mask_only"))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a recipe file; a missing file or bad TOML is one clear line."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} not found", hint="check the path, or see recipes/") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"recipe {path} is not valid TOML: {reason}") from None
    except OSError as err:
        raise ConfigError(f"recipe {path} cannot be read ({err.strerror or type(err).__name__})",
                          hint="check the path and its permissions") from None


def build_config(cls: type[C], *layers: dict[str, Any] | None, source: str = "") -> C:
    """Build ``cls`` from its defaults overridden by each mapping in turn (later wins).

    ``None`` values in a layer mean "not given" (unset CLI flags) and are skipped. Unknown keys
    raise :class:`ConfigError` naming the key, where it came from and the valid keys.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            key = key.replace("-", "_")
            if key not in names:
                where = f" in {source}" if source else ""
                raise ConfigError(
                    f"unknown setting {key!r}{where} for {cls.__name__}",
                    hint="valid keys: " + ", ".join(sorted(names)),
                )
            if value is not None:
                _check_plain_type(cls, key, value, source)
                merged[key] = value
    try:
        return cls(**merged)
    except TypeError as err:
        raise ConfigError(f"bad settings for {cls.__name__}: {err}") from None


_PLAIN = {"int": ((int,), "a number"), "float": ((int, float), "a number"),  # a TOML 1 is a fine float
          "str": ((str,), "text")}


def _check_plain_type(cls: type, key: str, value: Any, source: str) -> None:
    """A plain ``int``/``float``/``str`` field given something else (``"x"`` for a number, ``3`` or
    ``true`` for a word) is a one-line error here, not an error deep inside the job that reads it."""
    kind = next(f.type for f in dataclasses.fields(cls) if f.name == key)
    allowed, what = _PLAIN.get(str(kind).removesuffix(" | None"), (None, ""))
    if allowed and (isinstance(value, bool) or not isinstance(value, allowed)):
        where = f" in {source}" if source else ""
        raise ConfigError(f"{key}={value!r}{where} is not {what}", hint=f"{cls.__name__}.{key} is a {kind}")


def find_config(
    preset: str | None = None, recipe: str | Path | None = None, **overrides: Any
) -> FindConfig:
    """FindConfig from defaults < preset < recipe file < keyword overrides."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}", hint="choose one of: " + ", ".join(PRESETS))
    recipe_values = load_recipe(recipe) if recipe else None
    return build_config(
        FindConfig, PRESETS.get(preset or ""), recipe_values, overrides, source=str(recipe or "")
    )


def resolve_find(config: FindConfig | None, card: Any = None) -> FindConfig:
    """The settings a find on a model runs with: ``config``'s, with the fields it leaves ``None``
    filled from the model card (``card.find_defaults``, e.g. the toy model's native size), then the
    paper's (prompt ``DEFAULT_PROMPT``, refinement on, outline ``"token"``). The one place they are
    merged: the segmenter, learn (its contrast and attention loss read find's blocks and timestep)
    and the presence calibration all read them from here."""
    config = config or FindConfig()
    defaults = getattr(card, "find_defaults", None) or {}
    model_fill = {k: v for k, v in defaults.items() if getattr(config, k, 0) is None}
    resolved = build_config(FindConfig, vars(config), model_fill, source="model card")
    if resolved.prompt is None:
        resolved.prompt = DEFAULT_PROMPT
    if resolved.refine is None:
        resolved.refine = True  # the paper's method
    if resolved.outline is None:
        resolved.outline = "token"  # the paper's: a learned token is read like any other phrase
    return resolved


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


_ELSEWHERE = {  # the other jobs' configs, owned by their subpackages
    "LearnConfig": "personaseg.concepts.config",
    "BenchConfig": "personaseg.bench.config",
    "ToyTrainConfig": "personaseg.toyworld.config",
}


def __getattr__(name: str):
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'personaseg.config' has no attribute {name!r}")


__all__ = ["FindConfig", "PRESETS", "build_config", "find_config", "load_recipe", "read_toml", "recipe_path",
           "resolve_find", "to_dict",
           *_ELSEWHERE]
