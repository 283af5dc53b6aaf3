"""Shared fixtures: a tiny random diffusers pipeline saved once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_tiny_pipeline  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Folder of a tiny random StableDiffusionPipeline (diffusers layout)."""
    folder = tmp_path_factory.mktemp("tiny-sd")
    build_tiny_pipeline(folder)
    return folder


@pytest.fixture
def run(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from personaseg.cli.app import main

    def call(*args) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return exit_.value.code or 0, out, err

    return call
