"""Resumable training checkpoints in one safetensors file, written atomically.

A checkpoint holds everything an uninterrupted run would still have in memory after step N:
the trainable tensors, the optimizer state, the lr scheduler and grad scaler state, the global
RNG states (torch, CUDA, numpy, python), the step and the recent losses. Tensors go in the
safetensors body; everything else is JSON in its metadata header. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ConceptError

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT = 1


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested dict/list by ``{"__t__": key}`` and collect them."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__t__": key}
    if isinstance(obj, dict):
        return {"__d__": [[_split(k, f"{prefix}.k{i}", tensors), _split(v, f"{prefix}.{i}", tensors)]
                          for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        out = [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": out} if isinstance(obj, tuple) else out
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_split`."""
    if isinstance(obj, dict):
        if "__t__" in obj:
            return tensors[obj["__t__"]]
        if "__d__" in obj:
            return {_join(k, tensors): _join(v, tensors) for k, v in obj["__d__"]}
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, python)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(legacy=False),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_state(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state(s: dict) -> dict:
    """numpy's dict state after a round trip (its key array came back as a tensor)."""
    s = dict(s)
    s["state"] = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in s["state"].items()}
    return s


def _numpy_to_tensor(state: dict[str, Any]) -> dict[str, Any]:
    np_state = dict(state["numpy"])
    np_state["state"] = {k: (torch.from_numpy(np.asarray(v).astype(np.int64)) if isinstance(v, np.ndarray) else v)
                         for k, v in np_state["state"].items()}
    return {**state, "numpy": np_state}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors and JSON values) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    if "rng" in state:
        state["rng"] = _numpy_to_tensor(state["rng"])
    tensors: dict[str, torch.Tensor] = {}
    tree = _split(state, "s", tensors)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"personaseg_checkpoint": json.dumps({"format": FORMAT, "tree": tree})})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["personaseg_checkpoint"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise ConceptError(
            f"checkpoint {path} is unreadable ({type(err).__name__})",
            hint="start again with --force",
        ) from None
    state = _join(meta["tree"], tensors)
    if "rng" in state:
        state["rng"]["numpy"] = _numpy_state(state["rng"]["numpy"])
    return state
