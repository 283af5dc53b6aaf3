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
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged, truncated or crafted file
    is a :class:`ConceptError` (its structure and RNG states are checked here, before any use)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["personaseg_checkpoint"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        state = _join(meta["tree"], tensors)
        _check_state(state)
        state["rng"]["numpy"] = _numpy_state(state["rng"]["numpy"])
        _check_rng(state["rng"])
    except Exception as err:  # safetensors, json and the checks raise several types for a bad file
        reason = (str(err).splitlines() or [""])[0][:120]
        raise ConceptError(
            f"checkpoint {path} is unreadable ({type(err).__name__}{': ' + reason if reason else ''})",
            hint="start again with --force",
        ) from None
    return state


def _check_state(state: Any) -> None:
    """The fields ``learn`` reads from a checkpoint, with their types (ValueError if not)."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    need(isinstance(state, dict), "not a mapping")
    need(isinstance(state.get("token"), str), "no token")
    need(isinstance(state.get("step"), int) and not isinstance(state["step"], bool) and state["step"] >= 0, "bad step")
    need(isinstance(state.get("losses"), list) and all(isinstance(v, (int, float)) for v in state["losses"]),
         "bad losses")
    need(isinstance(state.get("photos"), list) and all(isinstance(h, str) for h in state["photos"]), "bad photos")
    need(isinstance(state.get("config"), dict), "no config")
    need(state.get("base_model") is None or isinstance(state["base_model"], str), "bad base_model")
    need(isinstance(state.get("train_seconds", 0.0), (int, float)), "bad train_seconds")
    trainable = state.get("trainable")
    need(isinstance(trainable, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in trainable.items()), "bad trainable tensors")
    for key in ("optimizer", "scheduler"):
        need(isinstance(state.get(key), dict), f"no {key} state")
    need(state.get("scaler") is None or isinstance(state["scaler"], dict), "bad scaler state")
    rng = state.get("rng")
    need(isinstance(rng, dict) and isinstance(rng.get("numpy"), dict)
         and isinstance(rng["numpy"].get("state"), dict), "bad rng state")


def _check_rng(state: dict[str, Any]) -> None:
    """Set every saved RNG state on a throwaway generator: a bad one fails here, not mid-resume."""
    torch.Generator().set_state(state["torch"])
    np.random.RandomState().set_state(state["numpy"])
    version, internal, gauss = state["python"]
    random.Random().setstate((version, tuple(internal), gauss))
    if "cuda" in state:
        if not isinstance(state["cuda"], list) or not all(isinstance(t, torch.Tensor) for t in state["cuda"]):
            raise ValueError("bad cuda rng state")
