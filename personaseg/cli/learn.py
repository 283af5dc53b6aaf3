"""`personaseg learn`: teach the model your object from a few photos.

Examples:

    personaseg learn ./photos --token '<mymug>' --class-word mug
    personaseg learn ./photos --token '<mymug>' --class-word mug --method lora
    personaseg learn ./photos --token '<mymug>' --model toy       # the toy card's fast settings
    personaseg learn ./photos --token '<mymug>' --model toy --method lora --recipe lora-cpu
    personaseg learn ./photos --token '<mymug>' --resume          # after Ctrl-C: the run's model and settings
    personaseg learn ./photos --token '<mymug>' --class-word mug --masks ./masks   # masks/<photo stem>.png
    personaseg learn ./photos --token '<mymug>' --class-word mug --click mug1.jpg=120,80 --box mug2.jpg=10,20,200,180
    accelerate launch -m personaseg learn ./photos --token '<mymug>' --mixed-precision fp16
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import err_console, one_line_warnings
from .options import ConceptsDirOpt, ModelOpt, SeedOpt


class Method(str, Enum):
    ti = "ti"
    lora = "lora"


class Precision(str, Enum):
    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


def learn(
    photos: Annotated[list[str], typer.Argument(help="Photos of your object: files, folders or globs (3-10 photos).")],
    token: Annotated[str, typer.Option("--token", "-t", help="The concept's token, e.g. '<mymug>' (one word in angle brackets).")],
    class_word: Annotated[Optional[str], typer.Option(help="What the object is, e.g. mug; initialises the token.")] = None,
    init_word: Annotated[Optional[str], typer.Option(help="Start the token from this word instead of the class word.")] = None,
    method: Annotated[Optional[Method], typer.Option(help="ti: Textual Inversion (small file); lora: LoRA DreamBooth.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML file of LearnConfig fields, or a shipped recipe by name: ti, ti-cpu, lora, lora-cpu.")] = None,
    model: ModelOpt = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default: the model card's, else ti: 3000, lora: 800).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate, scaled by batch x accumulation (default: the model card's, else ti: 5e-4, lora: 1e-4).")] = None,
    vectors: Annotated[Optional[int], typer.Option(help="Embedding vectors K for the token (<tok>, <tok>_1, ...).")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="Training size in px; photos are resized and centre-cropped (default: the model card's, else 512).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Photos per micro-batch (default: the model card's, else 1).")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Micro-batches per optimizer step (default: the model card's, else ti: 4, lora: 1).")] = None,
    mixed_precision: Annotated[Optional[Precision], typer.Option(help="Autocast dtype; trainable weights stay fp32.")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations to save memory.", show_default=False)] = None,
    prior_preservation: Annotated[Optional[bool], typer.Option("--prior-preservation/--no-prior-preservation", help="LoRA: DreamBooth's class-prior loss.", show_default=False)] = None,
    contrast_weight: Annotated[Optional[float], typer.Option(help="TI: keep the token off other objects of its class (class images; 0: off; default: the model card's, else 0).")] = None,
    contrast_hardest: Annotated[Optional[int], typer.Option(help="TI contrast: train against the N images of its pool (class or contrast images) the token lights most, re-ranked as it learns (0: all; default: the model card's, else 0).")] = None,
    contrast_pairs: Annotated[Optional[int], typer.Option(help="TI contrast: photos and as many pool images it reads per step; fewer is faster (default: the model card's, else --batch-size).")] = None,
    contrast_images: Annotated[Optional[Path], typer.Option(help="TI contrast: a folder (or glob) of images of other objects the token must stay off (default: the class images).")] = None,
    class_images: Annotated[Optional[Path], typer.Option(help="Folder of class images for the LoRA prior or TI contrast; {class} is replaced by the class word (default: generated).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Save a resumable checkpoint every N steps (500).")] = None,
    seed: SeedOpt = None,
    masks: Annotated[Optional[Path], typer.Option(help="Folder of object masks, one per photo named <photo stem>.png (white = object); photos without one are learned unguided. A <stem>.mask.png beside a photo is read too.")] = None,
    box: Annotated[Optional[list[str]], typer.Option(help="PHOTO=X0,Y0,X1,Y1: a box around the object in a photo (pixels as displayed); the class word's region in it becomes the mask. Repeatable.")] = None,
    click: Annotated[Optional[list[str]], typer.Option(help="PHOTO=X,Y: a click on the object in a photo; the class word's region holding it becomes the mask. Repeatable.")] = None,
    attention_weight: Annotated[Optional[float], typer.Option(help="Masks: weight of the loss pulling the token's map onto them (0: off; default: the model card's, else 1).")] = None,
    masked_loss: Annotated[Optional[bool], typer.Option("--masked-loss/--no-masked-loss", help="Masks: learn the object's pixels only (default: the model card's, else on).", show_default=False)] = None,
    guided_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps when a photo has a mask, box or click (default: the model card's, else --steps).")] = None,
    stop_when_stable: Annotated[Optional[float], typer.Option(help="Stop before --steps once the token's map on its photos moves less than this (mean change, 0-1) between checks 25 steps apart, e.g. 0.01; 0: off (default: the model card's, else off).")] = None,
    guided_stop_when_stable: Annotated[Optional[float], typer.Option(help="The same for a learn with a mask, box or click (default: the model card's: the toy model's 0.01; else --stop-when-stable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run of this token.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing concept or unfinished run.")] = False,
    concepts_dir: ConceptsDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Learn a personal concept from PHOTOS (3-10 photos of one object) and store it as --token.

    Then outline it in any image: personaseg find '<mymug>' kitchen.jpg. Ctrl-C saves a checkpoint
    (continue with --resume: the interrupted run's model and settings). Settings: defaults < the
    model card's < --recipe < flags.

    Examples:

      personaseg learn ./photos --token '<mymug>' --class-word mug

      personaseg learn ./photos --token '<mymug>' --class-word mug --method lora

      personaseg learn ./photos --token '<mymug>' --model toy

      personaseg learn ./photos --token '<mymug>' --model toy --method lora --recipe lora-cpu

      personaseg learn ./photos --token '<mymug>' --resume

      personaseg learn ./photos --token '<mymug>' --class-word mug --masks ./masks
    """
    from ..concepts import learn as learn_concept

    flags = {
        "method": method.value if method else None, "class_word": class_word, "init_word": init_word, "steps": steps, "lr": lr,
        "vectors": vectors, "resolution": resolution, "batch_size": batch_size, "grad_accum": grad_accum,
        "mixed_precision": mixed_precision.value if mixed_precision else None,
        "gradient_checkpointing": gradient_checkpointing, "prior_preservation": prior_preservation,
        "contrast_weight": contrast_weight, "contrast_hardest": contrast_hardest, "contrast_pairs": contrast_pairs,
        "class_images": str(class_images) if class_images else None,
        "contrast_images": str(contrast_images) if contrast_images else None,
        "checkpoint_every": checkpoint_every, "seed": seed,
        "attention_weight": attention_weight, "masked_loss": masked_loss, "guided_steps": guided_steps,
        "stop_when_stable": stop_when_stable, "guided_stop_when_stable": guided_stop_when_stable,
    }
    config = _config(recipe, flags, resume)
    with one_line_warnings():
        concept = learn_concept(
            photos if len(photos) > 1 else photos[0], token, config, model=model,
            concepts_dir=concepts_dir, force=force, resume=resume, progress=not quiet,
            masks=masks, boxes=box, clicks=click,
        )
    _report(concept, concepts_dir)


def _config(recipe: Path | None, flags: dict, resume: bool):
    """The LearnConfig of the recipe and flags; None for a --resume that gives neither (the checkpoint's)."""
    from ..concepts import LearnConfig
    from ..config import build_config, load_recipe

    recipe_values = load_recipe(recipe) if recipe else None
    given = recipe_values or any(v is not None for v in flags.values())
    return build_config(LearnConfig, recipe_values, flags, source=str(recipe or "")) if given or not resume else None


def _report(concept, concepts_dir: Path | None) -> None:
    """What was learned and the find command to paste, once (under `accelerate launch`, by the main process)."""
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    loss = concept.meta.get("final_loss")
    err_console.print(
        f"learned {concept.token} ({concept.method}, {concept.steps_text}"
        + (f", final loss {loss:.4f}" if loss is not None else "") + f") in {concept.path}",
        highlight=False,
    )
    err_console.print(f"use it: {find_command(concept, concepts_dir)}", highlight=False, markup=False)


def find_command(concept, concepts_dir: Path | None) -> str:
    """``personaseg find '<token>' IMAGE`` with what it needs to paste as it is: the token quoted,
    the concept's model when it is not the default, the store when it is not the default."""
    import shlex

    from ..models import DEFAULT_MODEL

    args = ["personaseg", "find", concept.token, "IMAGE"]
    if concept.base_model and concept.base_model != DEFAULT_MODEL:
        args += ["--model", concept.base_model]
    if concepts_dir is not None:
        args += ["--concepts-dir", str(concepts_dir)]
    return shlex.join(args)


def register(app: typer.Typer) -> None:
    """Add `learn` to the app."""
    app.command("learn")(learn)
