"""``ConceptStore``: the folder of learned concepts, with import and export.

Layout (root = ``$PERSONASEG_HOME/concepts``, else the user data dir + ``personaseg/concepts``)::

    <root>/<name>/concept.json, learned_embeds.safetensors[, pytorch_lora_weights.safetensors]
    <root>/.runs/<name>/checkpoint.safetensors     an interrupted run (``learn --resume``)
    <root>/.class-images/<key>/*.png               generated prior-preservation images
    <root>/.locks/<name>.lock                      held (with the holder's pid) while <name> is learned or written

A concept *is* its folder: every lookup goes by the folder's name, checked to be a plain name
(:func:`~.textual_inversion.check_name`) whose path stays inside the store. A concept folder is
built under a temporary name (``.tmp.<pid>.<id>.<name>``, never listed) and renamed into place:
that rename is the only moment a concept appears. An existing concept is only replaced with
``force``. Leftovers of a killed process (its pid is dead) are cleaned up by the next run, and a
replace cut short between its two renames gets the old concept back.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shlex
import shutil
import stat
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from safetensors.torch import save_file

from .. import __version__
from ..errors import ConceptError, PersonasegWarning
from ..runtime import home_dir
from .concept import META_FILE, Concept
from .locks import hold, pid_alive
from .textual_inversion import A1111_KEY, EMBEDS_FILE, check_name, load_embeds, parse_token, save_embeds

EXPORT_FORMATS = ("diffusers", "a1111")
LOCKS = ".locks"
# .tmp: a concept being written; .old: the concept it replaces, until the new one is in place;
# .rm: a concept being deleted. Named <kind>.<pid>.<id>.<name> so the next run knows whose it is.
_LEFTOVER = re.compile(r"^\.(tmp|old|rm)\.(\d+)\.([0-9a-f]{8})\.(.+)$")
_LEGACY = re.compile(r"^\.(tmp|old)-(.+)-([0-9a-f]{8})$")  # before pids were recorded
LEGACY_STALE_SECONDS = 600  # such a folder this old is left over from a killed run


class StoreWarning(PersonasegWarning):
    """A concept folder that cannot be read (it is skipped, the others are listed)."""


def default_root() -> Path:
    """``$PERSONASEG_HOME/concepts``, else ``<user data dir>/personaseg/concepts``."""
    return home_dir("concepts")


def concept_name(name_or_token: str) -> str:
    """``"<mymug>"`` or ``"mymug"`` -> ``"mymug"``."""
    return str(name_or_token).strip().strip("<>")


class ConceptStore:
    """The concepts in one folder."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    # ------------------------------------------------------------------ names and paths

    def _name(self, name_or_token: str) -> str:
        """The checked folder name of ``"<mymug>"`` / ``"mymug"`` (ConceptError if it cannot be one)."""
        name = concept_name(name_or_token)
        if not name:
            raise ConceptError("the concept name is empty", hint="give a name like mymug or '<mymug>'")
        try:
            return check_name(name)
        except ConceptError as err:
            raise ConceptError(f"{name_or_token!r} is not a concept name: {err.message}",
                               hint=f"concepts are folders of {self.root}; `personaseg concepts list` shows them") from None

    def _inside(self, path: Path, base: Path | None = None) -> Path:
        """``path``, after checking that it resolves to an entry right inside ``base`` (the root)."""
        base = self.root if base is None else base
        if path.resolve().parent != base.resolve():
            raise ConceptError(f"{path} leads outside the concept store {self.root} (to {path.resolve()})",
                               hint="a concept is a plain folder of the store; remove the link")
        return path

    def path(self, name_or_token: str) -> Path:
        """Folder of a concept (whether or not it exists), checked to lie inside the store."""
        return self._inside(self.root / self._name(name_or_token))

    def run_dir(self, name_or_token: str) -> Path:
        """Where an unfinished run of this concept keeps its checkpoint."""
        runs = self._inside(self.root / ".runs")
        return self._inside(runs / self._name(name_or_token), runs)

    def exists(self, name_or_token: str) -> bool:
        return (self.path(name_or_token) / META_FILE).is_file()

    def names(self) -> list[str]:
        """Names of the concepts in the store, sorted (temporary and hidden folders never count)."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            try:
                check_name(p.name)
            except ConceptError:
                continue
            if p.is_dir() and not p.is_symlink() and (p / META_FILE).is_file():
                found.append(p.name)
        return sorted(found)

    def list(self) -> list[Concept]:
        """Every readable concept in the store; a broken folder is skipped with a :class:`StoreWarning`."""
        self.clean()
        concepts = []
        for n in self.names():
            try:
                concepts.append(Concept.from_folder(self.root / n, name=n))
            except ConceptError as err:
                warnings.warn(f"skipped {err}", StoreWarning, stacklevel=2)
        return concepts

    def folder(self, name_or_token: str) -> Path:
        """The folder of an existing concept (ConceptError naming the known ones if there is none)."""
        name = self._name(name_or_token)
        folder = self.path(name)
        if not (folder / META_FILE).is_file() or folder.is_symlink():
            known = ", ".join(f"<{n}>" for n in self.names()) or "none"
            token = shlex.quote(f"<{name}>")  # the command is pasted into a shell: <x> unquoted is a redirection
            raise ConceptError(
                f"unknown concept <{name}>: learn one with `personaseg learn PHOTOS --token {token}` "
                f"(known: {known})",
                hint=f"concepts are looked up in {self.root}; --concepts-dir changes it",
            )
        return folder

    def get(self, name_or_token: str) -> Concept:
        """The concept in the folder ``mymug`` (given as ``mymug`` or ``<mymug>``)."""
        folder = self.folder(name_or_token)
        return Concept.from_folder(folder, name=folder.name)

    def remove(self, name_or_token: str) -> Path:
        """Delete a concept folder (and any unfinished run of it); returns the removed folder.
        A broken concept (unreadable concept.json) can be removed too."""
        name = self._name(name_or_token)
        with self.lock(name):
            folder = self.folder(name)
            gone = self.root / f".rm.{os.getpid()}.{uuid.uuid4().hex[:8]}.{name}"
            os.replace(folder, gone)  # the concept disappears at once; a kill mid-delete leaves a .rm the next run removes
            shutil.rmtree(gone, ignore_errors=True)
            shutil.rmtree(self.run_dir(name), ignore_errors=True)
        return folder

    # ------------------------------------------------------------------ locking and leftovers

    @contextmanager
    def lock(self, name_or_token: str) -> Iterator[None]:
        """Hold ``<root>/.locks/<name>.lock`` (with this pid in it) while a concept is learned or
        written: a second holder gets a :class:`ConceptError` at once. The lock dies with its
        process (an ``flock``), so a lock file left by a killed run is stale and taken over.
        Re-entrant within a process."""
        name = self._name(name_or_token)
        new_root = not self.root.exists()
        folder = self.root / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        path = self._inside(folder / f"{name}.lock", folder)
        try:
            with hold(path, name):
                yield
        finally:
            # a run that failed before writing anything leaves no store behind (rmdir: only if empty)
            for empty in (folder, self.root) if new_root else (folder,):
                try:
                    empty.rmdir()
                except OSError:
                    break

    def clean(self) -> None:
        """Remove what killed runs left (temporary and half-deleted folders) and put back a
        concept whose replacement was cut short between its two renames. Entries of a live
        process, or of a name locked now, are left alone."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            m, legacy = _LEFTOVER.match(p.name), _LEGACY.match(p.name)
            if m:
                kind, name, stale = m.group(1), m.group(4), not pid_alive(int(m.group(2)))
            elif legacy:
                kind, name = legacy.group(1), legacy.group(2)
                try:
                    stale = time.time() - p.lstat().st_mtime > LEGACY_STALE_SECONDS
                except OSError:
                    continue
            else:
                continue
            if not stale:
                continue
            try:
                with self.lock(name):
                    final = self.root / name
                    if kind == "old" and p.is_dir() and not os.path.lexists(final):
                        os.replace(p, final)  # the new concept never arrived: the old one comes back
                    elif p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
            except (ConceptError, OSError):
                continue  # busy, an unusable name, or a read-only store: leave it for a later run

    # ------------------------------------------------------------------ writing

    @contextmanager
    def writing(self, name: str, force: bool = False) -> Iterator[Path]:
        """Yield a temporary folder; on success it becomes ``<root>/<name>`` in one rename."""
        name = self._name(name)
        with self.lock(name):
            self.clean()
            final = self.path(name)
            if os.path.lexists(final) and not force:
                what = "already exists" if self.exists(name) else "exists (a folder that is not a concept)"
                raise ConceptError(
                    f"concept <{name}> {what} in {self.root}",
                    hint="use --force to replace it, or choose another --token",
                )
            if os.path.lexists(final) and (final.is_symlink() or not final.is_dir()):
                raise ConceptError(f"{final} is not a folder", hint="move it out of the store first")
            tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}.{name}"
            tmp = self.root / f".tmp.{tag}"
            tmp.mkdir()
            old = None
            try:
                yield tmp
                _fsync_folder(tmp)
                if os.path.lexists(final):
                    old = self.root / f".old.{tag}"
                    os.replace(final, old)
                os.replace(tmp, final)
                _fsync_folder(self.root, files=False)
            except BaseException:
                if old is not None and not os.path.lexists(final):
                    os.replace(old, final)  # put the old concept back
                    old = None
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def write_meta(folder: Path, meta: dict) -> None:
        """Write ``concept.json`` (inside a folder that is itself renamed into place)."""
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")

    # ------------------------------------------------------------------ import / export

    def import_(self, file: Path | str, name: str | None = None, force: bool = False) -> Concept:
        """Add a concept from a personaseg concept folder or a Textual Inversion ``.safetensors``
        (diffusers ``{token: t}`` or A1111 ``{"emb_params": t}``). The embedding is checked
        (``(K, width)`` floats, as its concept.json says) before anything is written; from a
        folder, only its regular files are copied (links are not followed)."""
        file = Path(file).expanduser()
        if file.is_dir():
            meta_file = file / META_FILE
            if not meta_file.is_file() or meta_file.is_symlink() or (file / EMBEDS_FILE).is_symlink():
                raise ConceptError(
                    f"{file} is not a concept folder (no {META_FILE} file)",
                    hint="give a folder written by `personaseg concepts export` or a .safetensors embedding",
                )
            src = Concept.from_folder(file)
            rows = src.embeddings()  # checked against concept.json's width and K
            name = parse_token(name or src.token, quiet=True)[0]
            with self.writing(name, force) as tmp:
                skipped = [p.name for p in sorted(file.iterdir()) if not _copy_regular(p, tmp / p.name)]
                if skipped:
                    warnings.warn(f"not imported from {file} (links or not regular files): {', '.join(skipped)}",
                                  StoreWarning, stacklevel=2)
                meta = dict(src.meta, name=name, token=f"<{name}>")
                save_embeds(tmp / EMBEDS_FILE, f"<{name}>", rows)
                self.write_meta(tmp, meta)
            return self.get(name)
        if file.suffix != ".safetensors" or not file.is_file():
            raise ConceptError(
                f"cannot import {file}: not a .safetensors file or concept folder",
                hint="pickle files (.pt, .bin) are not loaded; convert them to .safetensors",
            )
        token, rows = load_embeds(file)
        name, token = parse_token(name or token or file.stem, quiet=True)
        with self.writing(name, force) as tmp:
            save_embeds(tmp / EMBEDS_FILE, token, rows)
            self.write_meta(tmp, {
                "format": 1, "name": name, "token": token, "method": "ti",
                "base_model": None, "width": int(rows.shape[-1]), "num_vectors": int(rows.shape[0]),
                "class_word": None, "prompt_template": "a photo of a {}",
                "imported_from": str(file), "created": now(), "personaseg_version": __version__,
            })
        return self.get(name)

    def export(self, name_or_token: str, out: Path | str | None = None, format: str = "diffusers",
               force: bool = False) -> Path:
        """Write a concept for other tools; returns the path written. An existing file is only
        replaced with ``force`` (an existing LoRA folder only when it is an earlier export).

        ``diffusers``: TI -> ``<name>.safetensors`` = ``{token: (K, width)}``; LoRA -> a folder that
        ``load_lora_weights`` and ``load_textual_inversion`` read. ``a1111``: TI ->
        ``<name>.safetensors`` = ``{"emb_params": (K, width)}`` (A1111 and ComfyUI; the file name is
        the trigger word).
        """
        if format not in EXPORT_FORMATS:
            raise ConceptError(f"unknown export format {format!r}", hint="use diffusers or a1111")
        concept = self.get(name_or_token)
        rows = concept.embeddings()  # a bad embedding is refused, not passed on
        if concept.method == "lora":
            if format == "a1111":
                raise ConceptError(
                    f"<{concept.name}> is a LoRA concept; the a1111 format is for Textual Inversion",
                    hint="export it with --format diffusers (a folder diffusers' load_lora_weights reads)",
                )
            out = Path(out) if out else Path.cwd() / concept.name
            replace = os.path.lexists(out)
            if replace and not (force and out.is_dir() and not out.is_symlink() and (out / META_FILE).is_file()):
                raise ConceptError(
                    f"{out} exists", hint="give another --out" + (", or --force to replace this earlier export"
                                                                 if (out / META_FILE).is_file() else ""))
            tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
            old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
            try:
                tmp.mkdir(parents=True)
                for p in sorted(concept.path.iterdir()):
                    _copy_regular(p, tmp / p.name)
                if replace:
                    os.replace(out, old)
                os.replace(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(old, ignore_errors=True)
            return out
        out = Path(out) if out else Path.cwd() / f"{concept.name}.safetensors"
        if out.is_dir():
            out = out / f"{concept.name}.safetensors"
        if os.path.lexists(out) and (not force or out.is_dir()):
            raise ConceptError(f"{out} exists",
                               hint="give another --out" + ("" if out.is_dir() else ", or --force to replace it"))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            if format == "a1111":
                save_file({A1111_KEY: rows.contiguous()}, str(tmp), metadata={"name": concept.name})
            else:
                save_embeds(tmp, concept.token, rows)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return out


def _copy_regular(src: Path, dst: Path) -> bool:
    """Copy ``src`` if it is a regular file, never following a link (False: not copied)."""
    try:
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:  # a link (ELOOP), a folder, or unreadable
        return False
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, a device, a pipe
        os.close(fd)
        return False
    with os.fdopen(fd, "rb") as fh:
        with open(dst, "xb") as out:
            shutil.copyfileobj(fh, out)
    return True


def _fsync_folder(folder: Path, files: bool = True) -> None:
    """Flush a folder's files and the folder itself to disk (a rename after it is then durable)."""
    paths = [p for p in folder.iterdir() if p.is_file()] if files else []
    for p in [*paths, folder]:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:  # pragma: no cover - a file system without fsync on folders
            pass
        finally:
            os.close(fd)


def now() -> str:
    """UTC time stamp for concept.json."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
