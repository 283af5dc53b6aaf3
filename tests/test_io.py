"""personaseg.io: atomic file and folder writes (JSONL logs: tests/bench/test_runner.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personaseg import io
from personaseg.errors import InputError
from personaseg.io import folder_swap, replace_folder, save_npy_atomic, save_png_atomic


def _one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg


# --------------------------------------------------------------------------- files


def test_save_png_atomic_writes_mask_and_no_temp(tmp_path):
    out = tmp_path / "new" / "m.mask.png"  # missing folder is created
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    save_png_atomic(out, mask)
    got = np.asarray(Image.open(out))
    assert got.dtype == np.uint8 and got.shape == (5, 7)
    assert set(np.unique(got)) == {0, 255} and (got == 255).sum() == mask.sum()
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.mask.png"]
    save_png_atomic(tmp_path / "img.png", Image.new("RGB", (3, 2), (1, 2, 3)))
    assert Image.open(tmp_path / "img.png").size == (3, 2)


def test_save_npy_atomic_roundtrip(tmp_path):
    a = np.random.default_rng(0).random((4, 6)).astype(np.float16)
    save_npy_atomic(tmp_path / "s.npy", a)
    back = np.load(tmp_path / "s.npy")
    assert back.dtype == np.float16 and np.array_equal(back, a)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npy"]


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path):
    out = tmp_path / "s.npy"
    out.write_bytes(b"old")
    with pytest.raises(ValueError):
        save_npy_atomic(out, np.array([object()]))  # fails while writing (pickles refused)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.npy"]
    png = tmp_path / "m.png"
    png.write_bytes(b"old")
    with pytest.raises(ValueError):
        save_png_atomic(png, np.zeros((2, 2), np.float32))
    assert png.read_bytes() == b"old"


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    target = blocker / "out" / "m.png"  # its folder cannot exist
    with pytest.raises(InputError, match="not writable") as err:
        save_png_atomic(target, np.zeros((2, 2), bool))
    assert "--out" in str(err.value)
    _one_line_naming(err, blocker / "out")


# --------------------------------------------------------------------------- folders


def test_folder_swap_replaces_whole_and_leaves_nothing_beside(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with folder_swap(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").is_file()  # the old folder stays whole until the swap
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_folder_swap_that_fails_keeps_the_old_folder(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with folder_swap(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_replace_folder_puts_the_old_back_when_the_rename_fails(tmp_path, monkeypatch):
    out, tmp = tmp_path / "model", tmp_path / "new"
    out.mkdir()
    (out / "old.txt").write_text("old")
    tmp.mkdir()
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", second_fails)
    with pytest.raises(OSError):
        replace_folder(tmp, out)
    assert (out / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "new"]
