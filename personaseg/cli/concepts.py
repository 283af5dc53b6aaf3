"""`personaseg concepts`: list, show, remove, import, export and calibrate learned concepts.

Examples:

    personaseg concepts list
    personaseg concepts show '<mymug>'
    personaseg concepts export '<mymug>' --format a1111 --out mymug.safetensors
    personaseg concepts import downloaded-embedding.safetensors --name my-style
    personaseg concepts rm '<mymug>' --yes
    personaseg concepts calibrate '<mymug>' photos/
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import console, err_console, one_line_warnings
from .options import ConceptsDirOpt, DeviceOpt

concepts_app = typer.Typer(
    help="List, show, remove, import and export learned concepts.\n\n"
    "Examples:\n\n"
    "  personaseg concepts list\n\n"
    "  personaseg concepts export '<mymug>' --format a1111 --out mymug.safetensors\n\n"
    "  personaseg concepts import embedding.safetensors --name my-style",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Concept name or token, e.g. mymug or '<mymug>'.")]


class Format(str, Enum):
    diffusers = "diffusers"
    a1111 = "a1111"


def _store(concepts_dir: Path | None):
    from ..concepts import ConceptStore

    return ConceptStore(concepts_dir)


@concepts_app.command("list")
def list_(
    concepts_dir: ConceptsDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per concept on stdout.")] = False,
) -> None:
    """List the concepts in the store (name, method, vectors, class word, model).

    Examples:

      personaseg concepts list

      personaseg concepts list --json > concepts.jsonl

      personaseg concepts list --concepts-dir ./team-concepts
    """
    store = _store(concepts_dir)
    with one_line_warnings():  # a broken folder is one warning line; the others are listed
        concepts = store.list()
    if as_json:
        for c in concepts:
            console.print_json(json.dumps({"name": c.name, "token": c.token, "method": c.method,
                                           "vectors": c.num_vectors, "class_word": c.class_word,
                                           "base_model": c.base_model, "width": c.width, "path": str(c.path)}))
        return
    if not concepts:
        err_console.print(f"no concepts in {store.root}; learn one with: personaseg learn PHOTOS --token '<mymug>'",
                          highlight=False)
        return
    table = Table("token", "method", "K", "class word", "base model", "width", "created", title=str(store.root))
    for c in concepts:
        table.add_row(c.token, c.method, str(c.num_vectors), c.class_word or "-", c.base_model or "-",
                      str(c.width), str(c.meta.get("created", "-")))
    console.print(table)


@concepts_app.command("show")
def show(name: NameArg, concepts_dir: ConceptsDirOpt = None) -> None:
    """Print a concept's concept.json (training settings, photos, loss) and its folder.

    Examples:

      personaseg concepts show '<mymug>'

      personaseg concepts show mymug --concepts-dir ./team-concepts
    """
    concept = _store(concepts_dir).get(name)
    err_console.print(f"{concept.token} in {concept.path}", highlight=False)
    console.print_json(json.dumps(concept.meta))


@concepts_app.command("rm")
def rm(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Delete a concept from the store.

    Examples:

      personaseg concepts rm '<mymug>'

      personaseg concepts rm mymug --yes
    """
    store = _store(concepts_dir)
    folder = store.folder(name)  # the folder of that name, even when its concept.json is broken
    if not yes and not typer.confirm(f"delete <{folder.name}> ({folder})?"):
        raise typer.Exit(1)
    store.remove(folder.name)
    err_console.print(f"removed <{folder.name}>", highlight=False)


@concepts_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A Textual Inversion .safetensors (diffusers or A1111) or a concept folder.")],
    name: Annotated[Optional[str], typer.Option(help="Name to store it under (default: its token or file name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing concept of that name.")] = False,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Add a concept learned elsewhere (pickle .pt/.bin files are refused: convert to safetensors).

    Examples:

      personaseg concepts import downloaded-embedding.safetensors --name my-style

      personaseg concepts import ./shared/mymug --force
    """
    with one_line_warnings():
        concept = _store(concepts_dir).import_(file, name=name, force=force)
    err_console.print(f"imported {concept.token} ({concept.num_vectors} vectors, width {concept.width}) "
                      f"into {concept.path}", highlight=False)


@concepts_app.command("calibrate")
def calibrate(
    name: NameArg,
    photos: Annotated[list[str], typer.Argument(help="The photos it was learned from (files, folders, globs).")],
    model: Annotated[Optional[str], typer.Option(help="Model to read it with (default: the one it was learned on).")] = None,
    device: DeviceOpt = None,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Read a concept's presence reference again on its photos, as find reads presence now.

    find says "not found" when a concept draws less than a share of its presence on its own photos
    (min_relative_presence). The reference was read when it was learned; when find reads presence
    otherwise (another model card, or a personaseg that reads it with the class word), the rule is
    skipped with a warning. This reads it again: a few finds, not a new learn.

    Examples:

      personaseg concepts calibrate '<mymug>' photos/

      personaseg concepts calibrate mymug photos/*.jpg --model toy
    """
    from ..concepts.calibrate import recalibrate

    before = _store(concepts_dir).get(name).meta.get("presence_ref")
    with one_line_warnings():
        concept = recalibrate(name, photos, model=model, concepts_dir=concepts_dir, device=device)
    read = "with its class word" if "read" in concept.meta["presence_ref_at"] else "on its own map"
    was = f" (was {before:.4g})" if before else ""
    err_console.print(f"{concept.token}: presence reference {concept.meta['presence_ref']:.4g}{was}, read {read} "
                      f"on {len(concept.meta.get('photos', []))} photos", highlight=False)


@concepts_app.command("export")
def export(
    name: NameArg,
    format: Annotated[Format, typer.Option("--format", help="diffusers: load_textual_inversion / load_lora_weights; a1111: A1111 and ComfyUI embeddings.")] = Format.diffusers,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="File (or folder for LoRA) to write; default ./<name>.safetensors.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Write a concept for other tools (A1111 uses the file name as the trigger word).

    Examples:

      personaseg concepts export '<mymug>'

      personaseg concepts export '<mymug>' --format a1111 --out mymug.safetensors

      personaseg concepts export '<mymug>' --out mymug.safetensors --force
    """
    path = _store(concepts_dir).export(name, out, format=format.value, force=force)
    err_console.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `concepts` command group to the app."""
    app.add_typer(concepts_app, name="concepts")
