"""`personaseg track`: follow a phrase or a learned concept through video clips.

Examples:

    personaseg track "<mydog>" walk.mp4 --out tracked
    personaseg track mug cooking.mov --every 2 --start 10 --end 40 --json > mug.jsonl
    personaseg track "<mymug>" ./frames/ --fps 30                   # a folder of frames, sorted by name
    personaseg track "<mydog>" walk.mp4 --no-temporal               # every frame as find sees a photo (5x the work)
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..errors import InputError, PersonasegError
from .common import check_out_dir, err_console, make_segmenter, one_line_warnings, styled
from .options import ConceptsDirOpt, DeviceOpt, DtypeOpt, ModelOpt, SeedOpt


class _FramesPerSecond(ProgressColumn):
    """Frames done / seconds since the clip started (frames arrive in batches: a recent-rate figure jumps)."""

    def render(self, task) -> Text:
        elapsed = task.finished_time or task.elapsed
        return Text(f"{task.completed / elapsed:.2f} frames/s" if elapsed and task.completed else "-- frames/s")


def _expected(clip, start: float | None, end: float | None, every: int) -> int | None:
    """About how many frames will be processed (for the progress bar), or None if unknown."""
    n = len(clip) if hasattr(clip, "__len__") else getattr(clip, "expected", 0) or None
    if n is None and getattr(clip, "duration", None):
        n = round(clip.duration * clip.fps)
    if n is None:
        return None
    first = math.ceil((start or 0.0) * clip.fps)
    last = min(n, math.ceil(end * clip.fps)) if end is not None else n
    return max(0, math.ceil((last - first) / every))


def _check_free(out: Path, stem: str, force: bool, claimed: dict[str, Path], path: Path) -> None:
    """One output per clip: no two clips of this run on one stem; nothing from earlier replaced without --force."""
    if stem in claimed:
        raise InputError(f"{path} and {claimed[stem]} would both write {out / stem}",
                         hint="rename one, or track them into different --out folders")
    targets = [out / stem, out / f"{stem}.overlay.mp4"]
    if not force and any(t.exists() for t in targets):
        raise InputError(f"{next(t for t in targets if t.exists())} exists from an earlier run",
                         hint="pass --force to replace it, or choose another --out")


def _track_clip(seg, path: Path, phrase: str, args: dict, out: Path, as_json: bool, bar: Progress) -> tuple[int, int]:
    """Track one clip; outputs are written beside and moved into place only when the whole clip worked."""
    from ..io import save_png_atomic
    from ..masks import frame_record
    from ..track import TrackConfig
    from ..video import OverlayWriter, open_clip
    from ..viz import overlay

    clip = open_clip(path, args["fps"])
    stem = clip.stem
    every = args["every"]
    fps = clip.fps / every
    tmp = out / f".{stem}.{uuid.uuid4().hex[:8]}.tmp"
    task = bar.add_task(stem, total=_expected(clip, args["start"], args["end"], every))
    frames = found = 0
    config = TrackConfig(temporal=args["temporal"], **{k: args[k] for k in ("draws", "window", "batch") if args[k]})
    try:
        with OverlayWriter(out / f"{stem}.overlay.mp4", fps) as video:
            for r in seg.track(clip.frames(args["start"], args["end"], every), phrase, args["prompt"], config):
                name = f"{r.index:05d}.png"
                save_png_atomic(tmp / "masks" / name, r.mask)
                label = f"{phrase} {r.time:.2f}s" if r.found else f"{phrase}: not found"
                video.write(overlay(r.image, r.mask, label))
                if as_json:
                    print(json.dumps(frame_record(str(path), r, str(out / stem / "masks" / name))), flush=True)
                frames, found = frames + 1, found + int(r.found)
                bar.update(task, advance=1)
            target = out / stem
            if target.exists():  # --force: the earlier run's folder goes once this one is complete
                shutil.rmtree(target)
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        bar.update(task, total=frames, completed=frames)
    return frames, found


def track(
    phrase: Annotated[str, typer.Argument(help="A word or phrase ('mug'), or a learned concept ('<mymug>').")],
    videos: Annotated[list[str], typer.Argument(help="Video files (mp4, webm, mov, mkv, gif), folders of frames, "
                                                     "or folders of videos.")],
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: <stem>/masks/<frame>.png and "
                                                          "<stem>.overlay.mp4 per clip.")] = Path("personaseg-track"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record per frame on stdout (frame, time, "
                                                         "found, presence, the mask in COCO's terms as find --json "
                                                         "writes it: RLE, bbox [x, y, w, h], area, regions).")] = False,
    every: Annotated[int, typer.Option("--every", help="Process every N-th frame (the overlay runs at fps/N).")] = 1,
    start: Annotated[Optional[float], typer.Option("--start", help="First second to process.")] = None,
    end: Annotated[Optional[float], typer.Option("--end", help="Stop at this second (not included).")] = None,
    temporal: Annotated[bool, typer.Option("--temporal/--no-temporal", help="Temporal reasoning (default): "
                        "each frame found on fewer draws (2), whether the object is there read on the median "
                        "of the neighbouring frames' presence, the region continuing the previous frame's "
                        "object; a fifth of the UNet work. --no-temporal: every frame found as a photo, "
                        "with find's draws (benchmarks/RESULTS.md compares them).")] = True,
    draws_per_frame: Annotated[Optional[int], typer.Option("--draws-per-frame", help="Temporal: noise draws per "
                               "frame (default 2).")] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Temporal: neighbouring frames on each "
                                                                   "side voting on presence (default 2).")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Frames per UNet call (default 8).")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate of a folder of frames (default 25).")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Prompt template with {} for the phrase.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML file of FindConfig fields.")] = None,
    draws: Annotated[Optional[int], typer.Option(help="With --no-temporal: noise draws per frame (paper: 10); "
                                                      "temporal mode takes --draws-per-frame.")] = None,
    min_relative_presence: Annotated[Optional[float], typer.Option(help="A <concept> below this share of its "
                                     "presence on its own photos is 'not found'.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a clip's outputs left by an earlier run.")] = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Follow PHRASE (a word, or a learned concept like '<mymug>') through every frame of each clip.

    Writes OUT/<stem>/masks/<frame:05d>.png (0/255, the frame's size) and OUT/<stem>.overlay.mp4 (the
    clip's frame rate) per clip; with --json one record per frame on stdout. A bad clip is one error
    line (the others are still tracked, and the exit code is non-zero); a clip's outputs appear only
    once all its frames are done.

    Examples:

      personaseg track '<mydog>' walk.mp4 --out tracked

      personaseg track mug cooking.mov --every 2 --start 10 --end 40 --json > mug.jsonl

      personaseg track '<mymug>' ./frames/ --fps 30

      personaseg track '<mydog>' walk.mp4 --no-temporal
    """
    from ..video import collect_clips

    _check_options(phrase, every, start, end, window, {"--draws-per-frame": draws_per_frame, "--batch": batch,
                                                       "--fps": fps})
    if temporal and draws is not None:
        raise InputError(f"--draws {draws} sets the draws of per-frame find, and temporal mode is on",
                         hint=f"use --draws-per-frame {draws}, or add --no-temporal")
    if not temporal and (draws_per_frame is not None or window is not None):
        raise InputError("--draws-per-frame and --window are temporal mode's, and --no-temporal turns it off",
                         hint="drop them, or use --draws for per-frame find's draws")
    paths = collect_clips(videos)
    check_out_dir(out)
    if temporal and draws_per_frame is None:
        _note_recipe_draws(recipe)
    seg = make_segmenter(model, device, dtype, None, recipe, concepts_dir, draws=draws, seed=seed,
                         min_relative_presence=min_relative_presence)
    args = {"fps": fps, "every": every, "start": start, "end": end, "temporal": temporal, "prompt": prompt,
            "draws": draws_per_frame, "window": window, "batch": batch}
    if _track_all(seg, paths, phrase, args, out, force, as_json):
        raise typer.Exit(2)


def _note_recipe_draws(recipe: Path | None) -> None:
    """A recipe's ``draws`` are per-frame find's: say so in one line when temporal mode will not use them."""
    from ..config import load_recipe
    from ..track import TrackConfig

    draws = load_recipe(recipe).get("draws") if recipe is not None else None
    if draws is not None:
        err_console.print(styled("warning:", "yellow", f"the recipe's draws = {draws} are per-frame find's; temporal "
                                 f"mode finds each frame on {TrackConfig().draws} draws (--draws-per-frame {draws} "
                                 "to use them, or --no-temporal)"))


def _check_options(phrase: str, every: int, start: float | None, end: float | None, window: int | None,
                   positive: dict[str, float | None]) -> None:
    """One line for the first bad option, before any model loads."""
    if not phrase.strip():
        raise InputError("the phrase is empty", hint='give a word such as "mug" or a concept like "<mymug>"')
    if every < 1:
        raise InputError(f"--every {every} must be >= 1", hint="1 keeps every frame, 2 every other one")
    for name, value in positive.items():
        if value is not None and value <= 0:
            raise InputError(f"{name} {value:g} must be > 0")
    if window is not None and window < 0:
        raise InputError(f"--window {window} must be >= 0")
    if start is not None and start < 0:
        raise InputError(f"--start {start:g} must be >= 0 seconds")
    if start is not None and end is not None and end <= start:
        raise InputError(f"--end {end:g} s is not after --start {start:g} s", hint="give an end after the start")


def _track_all(seg, paths: list[Path], phrase: str, args: dict, out: Path, force: bool, as_json: bool) -> int:
    """Track every clip behind one progress bar; a bad clip is one error line. Returns the clips that failed."""
    failed, claimed = 0, {}
    # markup=False: a clip's name is shown as it is ("[1]" in a file name is no style)
    bar = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                   _FramesPerSecond(), TimeElapsedColumn(), console=err_console)
    with one_line_warnings(), bar:
        for path in paths:
            t0 = time.perf_counter()
            try:
                stem = path.stem if path.is_file() else path.name
                _check_free(out, stem, force, claimed, path)
                claimed[stem] = path
                out.mkdir(parents=True, exist_ok=True)
                frames, found = _track_clip(seg, path, phrase, args, out, as_json, bar)
            except PersonasegError as err:
                failed += 1
                bar.console.print(styled("error:", "bold red", str(err)))
                continue
            seconds = time.perf_counter() - t0
            bar.console.print(f"{stem}: {frames} frames ({found} with {phrase}), {frames / seconds:.2f} frames/s "
                              f"-> {out / stem}/masks, {out / stem}.overlay.mp4", highlight=False)
    return failed


def register(app: typer.Typer) -> None:
    app.command("track", help=track.__doc__)(track)
