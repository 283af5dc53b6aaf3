"""The Gradio page: Find, Learn and Concepts tabs over a :class:`~personaseg.ui.workspace.Workspace`.

Named API endpoints (``gradio_client``): ``/find`` (image file, phrase or ``<concept>``, optional
draws and seed -> mask PNG, overlay PNG, JSON record, token heat maps, status), ``/learn`` (photo
files, token, class word, method, steps, replace, optionally a photo's name, "click" or "box" and
its pixels "X,Y" / "X0,Y0,X1,Y1" -> status), ``/resume`` (photo files, token, the same click or box),
``/stop_learn`` and ``/concepts`` (the store, as ``concepts list --json``); with PyAV installed
(``personaseg[video]``) also ``/track`` (video file, phrase or ``<concept>``, draws, seed, every N-th
frame -> overlay mp4, track's JSON lines, status).
Errors are raised as ``gr.Error`` with the library's one-line message: the page shows it, a script
gets it as an exception, and the server goes on serving.
"""

from __future__ import annotations

import html
import importlib.util
import os
import queue
import re
import threading
import time
from typing import Any

import gradio as gr

from ..errors import InputError, PersonasegError
from . import layout
from .workspace import Workspace, collecting_warnings

INTRO = """# personaseg
Outline **your** object in photos: learn it from a few photos (**Learn**), then find it (**Find**).
Model: `{model}` · concepts in `{store}`"""


def _number(value, zero_is_default: bool = True) -> int | None:
    """A Number box: empty (or 0, where 0 means "the model's default") -> None, else an int."""
    if value is None or value == "" or (zero_is_default and int(value) == 0):
        return None
    return int(value)


def _files(value) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(getattr(v, "name", v)) for v in items]


# small images (the toy model's 64 px) are drawn to the size of their box, pixels kept sharp; the files stay as made
CSS = """
#find-image img, #find-overlay img, #find-mask img { width: 100%; height: 100%; object-fit: contain;
  image-rendering: pixelated; }
"""


def build_app(ws: Workspace) -> gr.Blocks:
    """The page; ``ws`` does the work."""
    has_video = importlib.util.find_spec("av") is not None  # a clip to track needs PyAV (personaseg[video])
    with gr.Blocks(title="personaseg", analytics_enabled=False) as demo:
        gr.Markdown(INTRO.format(model=ws.model or "(default)", store=ws.store.root))
        with gr.Tab("Find", id="find"):
            find = layout.find_tab(has_video)
        with gr.Tab("Learn", id="learn"):
            learn = layout.learn_tab()
        with gr.Tab("Concepts", id="concepts"):
            concepts = layout.concepts_tab()
        lists = [find.concept_pick, concepts.chosen, concepts.table]  # every place that lists the concepts
        concept_choices = _concept_choices(ws)
        demo.load(concept_choices, outputs=lists, api_visibility="private")
        _find_events(ws, find)
        _learn_events(ws, learn, lists, concept_choices)
        _concept_events(ws, concepts, lists, concept_choices)
    return demo


def _concept_choices(ws: Workspace):
    """The event that refills ``lists`` (both dropdowns, the table) from the store."""

    def concept_choices():
        try:
            concepts = ws.concepts()
        except PersonasegError as err:
            gr.Warning(html.escape(str(err)))
            concepts = []
        tokens = [c.token for c in concepts]
        rows = [[c.token, c.method, c.class_word or "-", c.meta.get("steps"), _loss(c), c.base_model or "-",
                 c.meta.get("created", "-")] for c in concepts]
        return gr.update(choices=tokens, value=None), gr.update(choices=tokens, value=None), rows

    return concept_choices


def _find_events(ws: Workspace, tab) -> None:
    """Find (``/find``) and, with PyAV, Track (``/track``): the files of one find or track and a status line."""

    def pick(token):
        return token or gr.skip()

    def find(image, phrase, draws, seed):
        try:
            out, notes = ws.find(image, phrase, _number(draws), _number(seed, zero_is_default=False))
        except PersonasegError as err:
            raise _error(err) from None
        for note in notes:
            gr.Warning(html.escape(note))
        r = out.summary
        if r["found"]:
            status = (f"{_code(r['phrase'])} found: {r['area_fraction'] * 100:.1f} % of the image, "
                      f"presence {r['presence']:.4f}")
        else:
            status = f"{_code(r['phrase'])}: not found (presence {r['presence']:.4f})"
        if r["relative_presence"] is not None:
            status += f", {r['relative_presence']:.2f} of its presence on its own photos"
        return str(out.mask), str(out.overlay), str(out.record), str(out.heatmap), status

    def track(clip, phrase, draws, seed, every):
        try:
            out, notes = ws.track(_files(clip)[0] if clip else None, phrase, _number(draws),
                                  _number(seed, zero_is_default=False), _number(every) or 1)
        except PersonasegError as err:
            raise _error(err) from None
        for note in notes:
            gr.Warning(html.escape(note))
        phrase = " ".join((phrase or "").split())
        status = f"{_code(phrase)} tracked: found in {out.found} of {out.frames} frames"
        return str(out.video), str(out.records), status

    tab.concept_pick.change(pick, tab.concept_pick, tab.phrase, api_visibility="private")
    tab.find_btn.click(find, [tab.image, tab.phrase, tab.draws, tab.seed],
                       [tab.mask, tab.overlay, tab.record, tab.heat, tab.status],
                       api_name="find", concurrency_limit=1, concurrency_id="find")
    if tab.track_btn is not None:
        tab.track_btn.click(track, [tab.clip, tab.phrase, tab.draws, tab.seed, tab.every],
                            [tab.track_video, tab.track_records, tab.status],
                            api_name="track", concurrency_limit=1, concurrency_id="find")


def _learn_events(ws: Workspace, tab, lists: list, concept_choices) -> None:
    """Learn (``/learn``), Resume (``/resume``), Stop (``/stop_learn``) and the click or box on a photo."""

    def run_learn(photos, token, class_word, method, steps, replace, guide_photo=None, guide_kind="click",
                  guide_point="", resume=False):
        """Learn in a thread and stream its progress; a page that goes away stops it with a checkpoint."""
        try:
            pointer = _pointer(guide_photo, guide_point)
            job = ws.plan_learn(_files(photos), token, class_word, method, _number(steps), replace=bool(replace),
                                resume=resume, **({"boxes" if guide_kind == "box" else "clicks": pointer}
                                                  if pointer else {}))
        except PersonasegError as err:
            raise _error(err) from None
        yield from _learn_progress(ws, job)

    def resume_learn(photos, token, guide_photo=None, guide_kind="click", guide_point=""):
        yield from run_learn(photos, token, None, None, None, False, guide_photo, guide_kind, guide_point,
                             resume=True)

    def guide_choices(photos):
        """The uploaded photos, by name, to click on one."""
        names = [os.path.basename(f) for f in _files(photos)]
        return gr.update(choices=names, value=None), None, ""

    def guide_show(photos, name):
        path = next((f for f in _files(photos) if os.path.basename(f) == name), None) if name else None
        return path, ""

    def guide_click(kind, point, evt: gr.SelectData):
        """A click on the photo: its pixel (as displayed); for a box, two clicks are its corners."""
        x, y = (int(v) for v in evt.index)
        first = [v.strip() for v in (point or "").split(",")]
        if kind == "box" and len(first) == 2:
            try:
                x0, y0 = (int(float(v)) for v in first)
            except ValueError:
                return f"{x},{y}"
            return f"{min(x0, x)},{min(y0, y)},{max(x0, x)},{max(y0, y)}"
        return f"{x},{y}"

    def learned_mask(token):
        """The mask learn drew from the click or box (the concept's masks/), once learned."""
        try:
            c = ws.store.get(token)
        except PersonasegError:
            return None
        masks = ws.derived_masks(c)
        return str(masks[0]) if masks else None

    def stop_learn():
        if ws.stop_learn():
            gr.Info("stopping after this step (a checkpoint is saved)")
        else:
            gr.Info("no learn is running")

    guide = [tab.guide_photo, tab.guide_kind, tab.guide_point]
    tab.photos.change(guide_choices, tab.photos, [tab.guide_photo, tab.guide_image, tab.guide_point],
                      api_visibility="private")
    tab.guide_photo.change(guide_show, [tab.photos, tab.guide_photo], [tab.guide_image, tab.guide_point],
                           api_visibility="private")
    tab.guide_kind.change(lambda: "", None, tab.guide_point, api_visibility="private")
    tab.guide_image.select(guide_click, [tab.guide_kind, tab.guide_point], tab.guide_point, api_visibility="private")
    learn_inputs = [tab.photos, tab.token, tab.class_word, tab.method, tab.steps, tab.replace, *guide]
    for button, fn, inputs, api_name in ((tab.learn_btn, run_learn, learn_inputs, "learn"),
                                         (tab.resume_btn, resume_learn, [tab.photos, tab.token, *guide], "resume")):
        done = button.click(lambda: None, None, tab.derived, api_visibility="private"
                            ).then(fn, inputs, tab.status, api_name=api_name, concurrency_limit=1,
                                   concurrency_id="learn")
        done.then(concept_choices, outputs=lists, api_visibility="private")
        done.success(learned_mask, tab.token, tab.derived, api_visibility="private")
    tab.stop_btn.click(stop_learn, None, None, api_name="stop_learn", concurrency_limit=None, concurrency_id="stop")


def _learn_progress(ws: Workspace, job):
    """Learn ``job`` in a thread and yield its progress as status lines, then the outcome. Closed early
    (the page closed or the event was cancelled), it stops the learn after this step, with a checkpoint."""
    from ..concepts import LearnInterrupted

    steps_seen: queue.Queue = queue.Queue()
    result: dict[str, Any] = {}

    def work():
        try:
            with collecting_warnings() as notes:
                result["concept"] = ws.learn(job, on_step=lambda *s: steps_seen.put(s))
            result["notes"] = notes
        except BaseException as err:  # noqa: BLE001 - handed to the request thread below
            result["error"] = err
        finally:
            steps_seen.put(None)

    thread = threading.Thread(target=work, name="personaseg-learn", daemon=True)
    thread.start()
    done, first = False, None  # (time, step) of the first step seen: the rate leaves out loading
    try:
        yield f"loading the model to learn {_code(job.token)}…"
        while True:
            item = steps_seen.get()
            while item is not None and not steps_seen.empty():  # show the latest step only
                item = steps_seen.get()
            if item is None:
                break
            step, total, loss = item
            first = first or (time.perf_counter(), step)
            rate = (step - first[1]) / max(time.perf_counter() - first[0], 1e-6)
            yield (f"learning {_code(job.token)}: step {step}/{total} · loss {loss:.4f}"
                   + (f" · {rate:.2f} steps/s" if step > first[1] else ""))
        done = True
    finally:
        if not done:  # the page closed or the event was cancelled: stop after this step, keep a checkpoint
            ws.stop_learn()
    err = result.get("error")
    if isinstance(err, LearnInterrupted):
        yield (f"stopped: {html.escape(err.message)}. Press **Resume** to continue with the same photos, "
               "or tick *Replace* and press **Learn** to start over.")
        return
    if isinstance(err, PersonasegError):
        yield f"{_code(job.token)} was not learned: {html.escape(_one_line(err))}"
        raise _error(err)
    if err is not None:
        raise err
    concept = result["concept"]
    loss = concept.meta.get("final_loss")
    text = (f"learned {_code(concept.token)} ({concept.method}, {html.escape(concept.steps_text)}"
            + (f", final loss {loss:.4f}" if loss is not None else "") + "): pick it in **Find**.")
    for note in result.get("notes", []):
        text += f"\n\n⚠ {html.escape(note)}"
    yield text


def _concept_events(ws: Workspace, tab, lists: list, concept_choices) -> None:
    """The Concepts tab (and ``/concepts``, the store as ``concepts list --json``): show, export, delete."""

    def list_concepts() -> list[dict]:
        """The concepts in the store (`personaseg concepts list --json`)."""
        try:
            return [{"name": c.name, "token": c.token, "method": c.method, "vectors": c.num_vectors,
                     "class_word": c.class_word, "base_model": c.base_model, "width": c.width,
                     "steps": c.meta.get("steps"), "created": c.meta.get("created")} for c in ws.concepts()]
        except PersonasegError as err:
            raise _error(err) from None

    def show(token):
        if not token:
            return None, ""
        try:
            c = ws.store.get(token)
        except PersonasegError as err:
            raise _error(err) from None
        photos = html.escape(", ".join(p["file"] for p in c.meta.get("photos", [])) or "-")  # names as uploaded
        ref = c.meta.get("presence_ref")
        text = (f"{_code(c.token)} in {_code(c.path)}: {c.method}, class word {html.escape(c.class_word or '-')}, "
                f"{c.num_vectors} vector(s), {c.meta.get('steps')} steps, final loss {_loss(c)}, "
                f"presence on its photos {ref if ref is None else f'{ref:.4f}'}; photos: {photos}")
        return c.meta, text

    def ask_delete(token):
        if not token:
            raise _error("pick a concept first")
        return gr.update(visible=True), f"Delete {_code(token)} from the store? This cannot be undone."

    def delete(token):
        try:
            path = ws.remove(token)
        except PersonasegError as err:
            raise _error(err) from None
        gr.Info(html.escape(f"removed {token} ({path})"))
        return gr.update(visible=False), None, ""

    def export(token, fmt):
        if not token:
            raise _error("pick a concept first")
        try:
            return str(ws.export(token, fmt))
        except PersonasegError as err:
            raise _error(err) from None

    gr.api(list_concepts, api_name="concepts", concurrency_limit=None, concurrency_id="concepts")
    tab.chosen.change(show, tab.chosen, [tab.meta, tab.details], api_visibility="private"
                      ).then(lambda: gr.update(visible=False), None, tab.confirm_row,
                             api_visibility="private")  # another concept: ask again before deleting
    tab.delete_btn.click(ask_delete, tab.chosen, [tab.confirm_row, tab.confirm_text], api_visibility="private")
    tab.no_btn.click(lambda: gr.update(visible=False), None, tab.confirm_row, api_visibility="private")
    tab.yes_btn.click(delete, tab.chosen, [tab.confirm_row, tab.meta, tab.details], api_visibility="private",
                      concurrency_id="learn").then(concept_choices, outputs=lists, api_visibility="private")
    tab.export_btn.click(export, [tab.chosen, tab.fmt], tab.exported, api_visibility="private")


def _error(err) -> gr.Error:
    """The page shows an error as HTML: escaped, so a ``<token>`` in it is not taken for a tag, and
    an upload named by its own name, not its temporary path. It stays until closed; a script
    (gradio_client) gets the same line, HTML-escaped."""
    return gr.Error(html.escape(_one_line(err)), duration=None, print_exception=False)


def _one_line(err) -> str:
    """The error's line, an upload named by its own name (not its temporary folder)."""
    text = str(err)
    uploads = os.environ.get("GRADIO_TEMP_DIR")
    if uploads:
        text = re.sub(re.escape(uploads.rstrip("/")) + r"/[0-9a-f]+/", "", text)
    return text


def _pointer(photo, point) -> list[str] | None:
    """The click or box of the page as learn's ``PHOTO=X,Y`` / ``PHOTO=X0,Y0,X1,Y1`` (read by learn itself)."""
    point = (point or "").strip()
    if not point:
        return None
    if not photo:
        raise InputError("a click or box needs its photo", hint="pick the photo you clicked on")
    return [f"{photo}={point.replace(' ', '')}"]


def _code(text: str) -> str:
    """``text`` as Markdown code: a ``<token>`` would otherwise be taken for an HTML tag and vanish."""
    return "`" + str(text).replace("`", "'") + "`"


def _loss(c) -> str:
    loss = c.meta.get("final_loss")
    return f"{loss:.4f}" if isinstance(loss, (int, float)) else "-"
