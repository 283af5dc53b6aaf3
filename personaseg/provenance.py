"""Where a measured figure came from: the code (git commit, version) and the model (its fingerprint).

Every report a benchmark writes carries :func:`provenance`, so a figure read months later names the
exact code and weights behind it ("toy" alone said nothing once the shipped weights had changed).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the checkout, when installed with -e


def git_commit(root: Path = SOURCE_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout holding the package; both
    None for an installed wheel (no ``.git`` beside it) or when git is missing. ``dirty``: tracked
    files differ from the commit, so the commit alone does not reproduce the figure."""
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha or None, "dirty": bool(status.strip())}


def provenance(model: str | None) -> dict[str, Any]:
    """The code and model behind a report: ``{"version", "git_commit", "git_dirty", "model",
    "model_fingerprint"}`` (the fingerprint of :func:`personaseg.models.model_fingerprint`: file
    contents for a local model or ``toy``, the id itself for a hub model)."""
    from . import __version__
    from .models import model_fingerprint, resolve_model_id

    git = git_commit()
    return {"version": __version__, "git_commit": git["commit"], "git_dirty": git["dirty"],
            "model": resolve_model_id(model), "model_fingerprint": model_fingerprint(model)}
