"""``ConceptStore``: the folder of learned concepts, with import and export.

Layout (root = ``$PERSONASEG_HOME/concepts``, else the user data dir + ``personaseg/concepts``)::

    <root>/<name>/concept.json, learned_embeds.safetensors[, pytorch_lora_weights.safetensors]
    <root>/.runs/<name>/checkpoint.safetensors     an interrupted run (``learn --resume``)
    <root>/.class-images/<key>/*.png               generated prior-preservation images

A concept folder is built under a temporary name and renamed into place, and an existing concept
is only replaced with ``force``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from safetensors.torch import save_file

from .. import __version__
from ..errors import ConceptError
from .concept import META_FILE, Concept
from .textual_inversion import A1111_KEY, EMBEDS_FILE, load_embeds, parse_token, save_embeds

HOME_ENV = "PERSONASEG_HOME"
EXPORT_FORMATS = ("diffusers", "a1111")


def default_root() -> Path:
    """``$PERSONASEG_HOME/concepts``, else ``<user data dir>/personaseg/concepts``."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "concepts"
    import platformdirs

    return Path(platformdirs.user_data_dir()) / "personaseg" / "concepts"


def concept_name(name_or_token: str) -> str:
    """``"<mymug>"`` or ``"mymug"`` -> ``"mymug"``."""
    return str(name_or_token).strip().strip("<>")


class ConceptStore:
    """The concepts in one folder."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    def path(self, name_or_token: str) -> Path:
        """Folder of a concept (whether or not it exists)."""
        return self.root / concept_name(name_or_token)

    def run_dir(self, name_or_token: str) -> Path:
        """Where an unfinished run of this concept keeps its checkpoint."""
        return self.root / ".runs" / concept_name(name_or_token)

    def exists(self, name_or_token: str) -> bool:
        return (self.path(name_or_token) / META_FILE).exists()

    def names(self) -> list[str]:
        """Names of the concepts in the store, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / META_FILE).is_file())

    def list(self) -> list[Concept]:
        """Every concept in the store (a broken folder raises, naming it)."""
        return [Concept.from_folder(self.root / n) for n in self.names()]

    def get(self, name_or_token: str) -> Concept:
        """The concept named ``mymug`` or ``<mymug>``."""
        name = concept_name(name_or_token)
        if not name or not self.exists(name):
            known = ", ".join(f"<{n}>" for n in self.names()) or "none"
            raise ConceptError(
                f"unknown concept <{name}>: learn one with `personaseg learn PHOTOS --token <{name}>` "
                f"(known: {known})",
                hint=f"concepts are looked up in {self.root}; --concepts-dir changes it",
            )
        return Concept.from_folder(self.path(name))

    def remove(self, name_or_token: str) -> Path:
        """Delete a concept (and any unfinished run of it); returns the removed folder."""
        concept = self.get(name_or_token)
        shutil.rmtree(concept.path)
        shutil.rmtree(self.run_dir(concept.name), ignore_errors=True)
        return concept.path

    # ------------------------------------------------------------------ writing

    @contextmanager
    def writing(self, name: str, force: bool = False) -> Iterator[Path]:
        """Yield a temporary folder; on success it becomes ``<root>/<name>`` in one rename."""
        final = self.path(name)
        if self.exists(name) and not force:
            raise ConceptError(
                f"concept <{name}> already exists in {self.root}",
                hint="use --force to replace it, or choose another --token",
            )
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            old = None
            if final.exists():
                old = self.root / f".old-{name}-{uuid.uuid4().hex[:8]}"
                os.replace(final, old)
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def write_meta(folder: Path, meta: dict) -> None:
        """Write ``concept.json`` (inside a folder that is itself renamed into place)."""
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")

    # ------------------------------------------------------------------ import / export

    def import_(self, file: Path | str, name: str | None = None, force: bool = False) -> Concept:
        """Add a concept from a personaseg concept folder or a Textual Inversion ``.safetensors``
        (diffusers ``{token: t}`` or A1111 ``{"emb_params": t}``)."""
        file = Path(file).expanduser()
        if file.is_dir():
            if not (file / META_FILE).exists():
                raise ConceptError(
                    f"{file} is not a concept folder (no {META_FILE})",
                    hint="give a folder written by `personaseg concepts export` or a .safetensors embedding",
                )
            src = Concept.from_folder(file)
            name = parse_token(name or src.token, quiet=True)[0]
            with self.writing(name, force) as tmp:
                for p in file.iterdir():
                    if p.is_file():
                        shutil.copy2(p, tmp / p.name)
                meta = dict(src.meta, name=name, token=f"<{name}>")
                if name != src.name:
                    _, rows = load_embeds(file / EMBEDS_FILE)
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

    def export(self, name_or_token: str, out: Path | str | None = None, format: str = "diffusers") -> Path:
        """Write a concept for other tools; returns the path written.

        ``diffusers``: TI -> ``<name>.safetensors`` = ``{token: (K, width)}``; LoRA -> a folder that
        ``load_lora_weights`` and ``load_textual_inversion`` read. ``a1111``: TI ->
        ``<name>.safetensors`` = ``{"emb_params": (K, width)}`` (A1111 and ComfyUI; the file name is
        the trigger word).
        """
        if format not in EXPORT_FORMATS:
            raise ConceptError(f"unknown export format {format!r}", hint="use diffusers or a1111")
        concept = self.get(name_or_token)
        rows = concept.embeddings()
        if concept.method == "lora":
            if format == "a1111":
                raise ConceptError(
                    f"<{concept.name}> is a LoRA concept; the a1111 format is for Textual Inversion",
                    hint="export it with --format diffusers (a folder diffusers' load_lora_weights reads)",
                )
            out = Path(out) if out else Path.cwd() / concept.name
            if out.exists():
                raise ConceptError(f"{out} exists", hint="give another --out or remove it")
            tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
            shutil.copytree(concept.path, tmp)
            os.replace(tmp, out)
            return out
        out = Path(out) if out else Path.cwd() / f"{concept.name}.safetensors"
        if out.is_dir():
            out = out / f"{concept.name}.safetensors"
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


def now() -> str:
    """UTC time stamp for concept.json."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
