"""Shared fixtures: a tiny random diffusers pipeline saved once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_tiny_pipeline  # noqa: E402


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """``ctrl_c_after(n)``: press Ctrl-C (a real SIGINT) once, right after optimizer step ``n``
    finished. Returns a function that takes it back (so does the test's end)."""
    import signal

    from personaseg.concepts.trainer import Trainer

    def arm(n: int):
        original = Trainer.train_step

        def step(self, i):
            loss = original(self, i)
            if i + 1 == n:
                signal.raise_signal(signal.SIGINT)
            return loss

        monkeypatch.setattr(Trainer, "train_step", step)
        return lambda: monkeypatch.setattr(Trainer, "train_step", original)

    return arm


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
