"""Loading a Stable Diffusion pipeline, choosing device and dtype, and a model's card.

``load_pipeline`` accepts a hub id, a local diffusers folder, a single ``.safetensors`` checkpoint
or the name of a model shipped inside the package (:data:`EMBEDDED`: ``"toy"``, the toy world's).
A model folder's ``personaseg.json`` (its card) gives its layer map and find / learn defaults; the
layer map itself is read by :mod:`personaseg.layers`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .config import mask_only_fields
from .errors import ModelError

if TYPE_CHECKING:  # torch is imported where it is used: the toy world reads EMBEDDED without it
    import torch

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the paper used CompVis/stable-diffusion-v1-4
MODEL_ENV = "PERSONASEG_MODEL"
MODEL_CARD = "personaseg.json"  # optional per-model defaults in a model folder


class Embedded(NamedTuple):
    """A model shipped inside the package, loaded by its name (``--model toy``)."""

    folder: Path  # its diffusers folder
    rebuild: str  # the command that trains it again, for the message when the folder is missing


# name -> the shipped model. The toy world's files live with the toy world; this registry is how the
# loader finds them without importing it.
EMBEDDED: dict[str, Embedded] = {
    "toy": Embedded(Path(__file__).parent / "toyworld" / "weights", "personaseg toyworld train"),
}

def resolve_model_id(model: str | None) -> str:
    """The model to load: the argument, else $PERSONASEG_MODEL, else SD 1.5."""
    return model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def model_fingerprint(model: str | None) -> str:
    """What identifies a local model's contents for what ``learn`` makes of it (folder or file,
    ``toy`` included): each file's path, size and first MiB, so retrained weights or an edited
    personaseg.json read as another model; the card's find settings that only draw masks from the
    attention (:data:`MASK_ONLY_FIND`) are left out, so tuning them does not make learned concepts
    look stale. A hub id is its own fingerprint (diffusers pins the files it cached)."""
    import hashlib

    model_id = resolve_model_id(model)
    path = _local_path(model_id)
    if not path.exists():
        return model_id
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir() and f.relative_to(path) == Path(MODEL_CARD):
            h.update(f"{MODEL_CARD}:{_card_for_learning(f)}".encode())
            continue
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{f.stat().st_size}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()


# Find settings applied after the attention is read (FindConfig's fields marked mask-only): neither
# learning nor a concept's presence reference depends on them.
MASK_ONLY_FIND = mask_only_fields()


def _card_for_learning(card: Path) -> str:
    """The model card as canonical JSON without :data:`MASK_ONLY_FIND` (raw bytes if unreadable)."""
    raw = card.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.hex()
    if isinstance(data, dict) and isinstance(data.get("find"), dict):
        data["find"] = {k: v for k, v in data["find"].items() if k not in MASK_ONLY_FIND}
    return json.dumps(data, sort_keys=True)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else accelerate's choice for this process (cuda, then mps, then cpu)."""
    import torch

    if device is not None:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ModelError(f"unknown device {device!r}", hint="use cuda, cuda:1, mps or cpu") from None
        _check_device_available(dev)
        return dev
    from accelerate import PartialState

    return PartialState().device


def _check_device_available(dev: torch.device) -> None:
    """A device this machine has, or one line saying it does not (torch's own error is a traceback
    deep in the first ``.to(dev)``)."""
    import torch

    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ModelError(f"--device {dev} is not available: {why}",
                             hint="use --device cpu, or install a CUDA build of torch on a GPU machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ModelError(f"--device {dev} is not available: this machine has {count} CUDA GPU(s)",
                             hint=f"use cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"--device {dev} is not available on this machine (no Apple GPU)", hint="use --device cpu")


def _fit_tokenizer(pipe) -> None:
    """Hand-assembled model folders often have a tokenizer without ``model_max_length`` (transformers
    then says 10**30, and padding to it fails): fall back to the text encoder's position count."""
    tok, enc = pipe.tokenizer, pipe.text_encoder
    limit = getattr(getattr(enc, "config", None), "max_position_embeddings", None)
    if limit and (not tok.model_max_length or tok.model_max_length > limit):
        tok.model_max_length = int(limit)


def load_reason(err: BaseException, limit: int = 160) -> str:
    """One short line for why loading failed: no hub chatter, no parenthesis cut open."""
    text = str(err).strip()
    if any(s in text.lower() for s in ("not fully cached", "cached snapshot", "outgoing traffic", "couldn't connect",
                                       "offline mode")):
        return "it is not in the local Hugging Face cache and the Hub cannot be reached"
    text = text.splitlines()[0] if text else type(err).__name__
    if len(text) > limit:
        cut = text[:limit]
        text = cut[: cut.rfind(" ")] if " " in cut else cut
        text += " ..."
    opened, closed_stray = [], []
    for i, ch in enumerate(text):
        if ch == "(":
            opened.append(i)
        elif ch == ")" and opened:
            opened.pop()
        elif ch == ")":
            closed_stray.append(i)
    if opened:  # a parenthesis the cut (or the library) left open: drop from it on
        text = text[: opened[0]].rstrip(" :,;") + " ..."
    return "".join(ch for i, ch in enumerate(text) if i not in closed_stray)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The given dtype, else float16 on CUDA and float32 elsewhere."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    names = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}
    if dtype not in names:
        raise ModelError(f"unknown dtype {dtype!r}", hint="use float16, bfloat16 or float32")
    return names[dtype]


@dataclass
class ModelCard:
    """What personaseg knows about a loaded model beyond diffusers' own config."""

    model_id: str  # as the user named it ("toy", a hub id, a folder, a file)
    folder: Path | None = None  # local folder, when there is one
    layer_map: dict[str, Any] | None = None  # {"cross": [...], "self": "..."} from personaseg.json
    find_defaults: dict[str, Any] = field(default_factory=dict)  # FindConfig overrides
    learn_defaults: dict[str, Any] = field(default_factory=dict)  # LearnConfig fields left None


def _embedded_dir(name: str) -> Path:
    """The folder of the shipped model ``name``; one line saying how to get it back when it is missing."""
    model = EMBEDDED[name]
    if not (model.folder / "model_index.json").exists():
        raise ModelError(
            f"the {name} model is missing from {model.folder}",
            hint=f"reinstall personaseg, or train one with `{model.rebuild}`",
        )
    return model.folder


def _local_path(model_id: str) -> Path:
    """Where a model id would be on disk (the shipped folder for an embedded name); may not exist."""
    return _embedded_dir(model_id) if model_id in EMBEDDED else Path(model_id).expanduser()


def _read_card(model_id: str, folder: Path | None) -> ModelCard:
    card = ModelCard(model_id=model_id, folder=folder)
    if folder is not None and (folder / MODEL_CARD).exists():
        data = json.loads((folder / MODEL_CARD).read_text())
        card.layer_map = data.get("layer_map")
        card.find_defaults = data.get("find", {})
        card.learn_defaults = data.get("learn", {})
        for key in ("class_images", "contrast_images"):
            images = card.learn_defaults.get(key)
            if images and not Path(images).is_absolute():  # shipped with the model: relative to its folder
                card.learn_defaults[key] = str(folder / images)
    return card


def read_card(model: str | None) -> ModelCard:
    """The model card of ``model`` without loading its weights (``learn`` needs its settings before
    it picks the accelerator); empty for a hub id or a single file."""
    model_id = resolve_model_id(model)
    path = _local_path(model_id)
    folder = path if path.is_dir() and (path / "model_index.json").exists() else None
    return _read_card(model_id, folder)


def canonical_model_id(model: str | None) -> str:
    """The model as recorded beside what is learned on it: a local folder or file as an absolute
    path (so a concept's or checkpoint's model still loads from another working directory), else
    the id as named (``toy``, a hub id)."""
    model_id = resolve_model_id(model)
    if model_id in EMBEDDED:
        return model_id
    path = Path(model_id).expanduser()
    return str(path.resolve()) if path.exists() else model_id


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two model names (ids, relative or absolute paths, ``toy``) name the same model."""
    if a is None or b is None:
        return False
    a_id, b_id = canonical_model_id(a), canonical_model_id(b)
    if a_id == b_id:
        return True
    for name in EMBEDDED.keys() & {a_id, b_id}:  # a shipped model by its name and by its folder
        if {a_id, b_id} == {name, str(_local_path(name).resolve())}:
            return True
    return False


def _check_architecture(folder_or_id: str | Path) -> None:
    index = Path(folder_or_id) / "model_index.json"
    if index.exists():
        cls = json.loads(index.read_text()).get("_class_name", "")
        if "XL" in cls or "Flux" in cls or "StableDiffusion3" in cls:
            raise ModelError(
                f"{folder_or_id} is a {cls}: not supported yet",
                hint="use a Stable Diffusion 1.x or 2.x model",
            )


def load_pipeline(
    model: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
):
    """Load a ``StableDiffusionPipeline`` onto a device; return ``(pipe, card)``.

    Raises :class:`ModelError` with a one-line fix when the model cannot be found (offline and
    not cached), is a pickle checkpoint, or is an unsupported architecture.
    """
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # our own progress bars speak for us
    transformers_logging.disable_progress_bar()
    model_id = resolve_model_id(model)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    kwargs = dict(dtype=torch_dtype, safety_checker=None, requires_safety_checker=False)
    path = _local_path(model_id)
    folder = None
    try:
        if path.is_dir():
            if not (path / "model_index.json").exists():
                raise ModelError(
                    f"{path} is not a diffusers model folder (no model_index.json)",
                    hint="give the folder that save_pretrained wrote, a .safetensors file or a hub id",
                )
            _check_architecture(path)
            folder = path
            pipe = StableDiffusionPipeline.from_pretrained(path, use_safetensors=True, **kwargs)
        elif path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
            raise ModelError(
                f"{path}: pickle checkpoints are not loaded (they can run code)",
                hint="convert it to .safetensors, or use a diffusers folder",
            )
        elif path.suffix == ".safetensors":
            if not path.exists():
                raise ModelError(f"checkpoint {path} not found", hint="check the path")
            from .single_file import load_single_file

            pipe = load_single_file(path, **kwargs)  # shipped configs and tokenizer: offline
        elif model_id.startswith(("/", ".", "~")) and not path.exists():
            raise ModelError(f"model folder {path} not found", hint="check the path, or give a hub id")
        elif path.exists() or model_id.count("/") != 1:
            raise ModelError(
                f"model {model_id!r} is neither a diffusers folder, a .safetensors file nor a hub id",
                hint="e.g. --model stable-diffusion-v1-5/stable-diffusion-v1-5, or --model toy",
            )
        else:
            pipe = StableDiffusionPipeline.from_pretrained(model_id, use_safetensors=True, **kwargs)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: a single file whose weights fit no SD config
        raise ModelError(
            f"could not load model {model_id!r}: {load_reason(err)}",
            hint="offline? download it once with `hf download MODEL` where there is network, "
            "or pass a local folder with --model, or try --model toy",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    _fit_tokenizer(pipe)
    pipe = pipe.to(dev)
    return pipe, _read_card(model_id, folder)
