"""The page's components, one builder per tab (no events: :mod:`personaseg.ui.app` wires them).

Each builder is called inside its ``gr.Tab`` and returns its components by name; every one that a
browser test or a script looks for has an ``elem_id``.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from .workspace import MAX_PHOTOS


def handed_as_is(image: gr.Image) -> gr.Image:
    """Make a filepath ``gr.Image`` hand the uploaded file over as is: a file that is no image then fails
    in ``load_image``, with the one line the CLI prints, not inside Gradio. (An instance attribute,
    not a subclass: Gradio writes a .pyi beside the module of every component subclass.)"""
    original = image.preprocess

    def preprocess(payload):
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        return original(payload)

    image.preprocess = preprocess
    return image


def find_tab(has_video: bool) -> SimpleNamespace:
    """An image and a phrase or concept in the left column (and a clip, with PyAV), results on the right."""
    with gr.Row():
        with gr.Column(scale=1):
            image = handed_as_is(gr.Image(label="Image", type="filepath", sources=["upload"], height=280,
                                          elem_id="find-image"))
            concept_pick = gr.Dropdown(label="A learned concept", choices=[], elem_id="find-concept")
            phrase = gr.Textbox(label="…or a phrase", placeholder="mug, or <mymug>", max_lines=1,
                                elem_id="find-phrase")
            with gr.Accordion("Settings", open=False):
                draws = gr.Number(0, label="Noise draws (0: the model's default)", precision=0, minimum=0,
                                  elem_id="find-draws")
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="find-seed")
            find_btn = gr.Button("Find", variant="primary", elem_id="find-button")
            clip = every = track_btn = None
            if has_video:
                clip = gr.File(label="…or a clip to follow the phrase through (video file)",
                               file_types=["video"], elem_id="track-clip")
                every = gr.Number(1, label="Every N-th frame", precision=0, minimum=1, elem_id="track-every")
                track_btn = gr.Button("Track the clip", elem_id="track-button")
        with gr.Column(scale=2):
            status = gr.Markdown(label="status", elem_id="find-status")
            with gr.Row():
                overlay = gr.Image(label="Overlay", format="png", interactive=False, height=300,
                                   elem_id="find-overlay")
                mask = gr.Image(label="Mask", format="png", interactive=False, height=300, elem_id="find-mask")
            heat = gr.Image(label="Heat map of each prompt token", format="png", interactive=False,
                            elem_id="find-heatmap")
            record = gr.File(label="JSON record (mask as COCO RLE)", interactive=False, elem_id="find-record")
            track_video = track_records = None
            if has_video:
                track_video = gr.Video(label="The clip, outlined", interactive=False, elem_id="track-video")
                track_records = gr.File(label="JSON lines, one per frame (as track --json)",
                                        interactive=False, elem_id="track-records")
    return SimpleNamespace(image=image, concept_pick=concept_pick, phrase=phrase, draws=draws, seed=seed,
                           find_btn=find_btn, clip=clip, every=every, track_btn=track_btn, status=status,
                           overlay=overlay, mask=mask, heat=heat, record=record, track_video=track_video,
                           track_records=track_records)


def learn_tab() -> SimpleNamespace:
    """Photos, token, class word, method, steps; optionally a click or box on one photo; the buttons."""
    with gr.Row():
        with gr.Column():
            photos = gr.File(label=f"Photos of your object (3-10, at most {MAX_PHOTOS})",
                             file_count="multiple", file_types=["image"], elem_id="learn-photos")
            token = gr.Textbox(label="Token", placeholder="<mymug>", max_lines=1, elem_id="learn-token")
            class_word = gr.Textbox(label="Class word (what it is)", placeholder="mug", max_lines=1,
                                    elem_id="learn-class")
            method = gr.Radio(["ti", "lora"], value="ti", label="Method (ti: Textual Inversion, lora: LoRA)",
                              elem_id="learn-method")
            steps = gr.Number(0, label="Steps (0: the model's default)", precision=0, minimum=0,
                              elem_id="learn-steps")
            replace = gr.Checkbox(label="Replace: learn an existing concept again / start an interrupted "
                                  "run over", value=False, elem_id="learn-replace")
            with gr.Accordion("Where the object is (optional; needs the class word)", open=True):
                guide_photo = gr.Dropdown(label="Photo to click on", choices=[], allow_custom_value=True,
                                          elem_id="learn-guide-photo")
                guide_kind = gr.Radio(["click", "box"], value="click", label="Click on the object, or "
                                      "box: click two corners", elem_id="learn-guide-kind")
                guide_image = gr.Image(label="Click on your object", type="filepath", interactive=False,
                                       height=280, elem_id="learn-guide-image")
                guide_point = gr.Textbox(label="Click X,Y or box X0,Y0,X1,Y1 (pixels of the photo)",
                                         value="", max_lines=1, elem_id="learn-guide-point")
            with gr.Row():
                learn_btn = gr.Button("Learn", variant="primary", elem_id="learn-button")
                stop_btn = gr.Button("Stop", elem_id="learn-stop")
                resume_btn = gr.Button("Resume", elem_id="learn-resume")
        with gr.Column():
            status = gr.Markdown(label="status", elem_id="learn-status")
            derived = gr.Image(label="The mask the model drew from your click or box", format="png",
                               interactive=False, height=280, elem_id="learn-derived-mask")
    return SimpleNamespace(photos=photos, token=token, class_word=class_word, method=method, steps=steps,
                           replace=replace, guide_photo=guide_photo, guide_kind=guide_kind, guide_image=guide_image,
                           guide_point=guide_point, learn_btn=learn_btn, stop_btn=stop_btn, resume_btn=resume_btn,
                           status=status, derived=derived)


def concepts_tab() -> SimpleNamespace:
    """The store as a table; pick one to see it, export it or delete it (after a confirmation)."""
    table = gr.Dataframe(headers=["token", "method", "class word", "steps", "final loss", "base model",
                                  "created"], interactive=False, elem_id="concepts-table")
    with gr.Row():
        chosen = gr.Dropdown(label="Concept", choices=[], elem_id="concepts-pick")
        fmt = gr.Radio(["diffusers", "a1111"], value="diffusers", label="Export format")
    with gr.Row():
        export_btn = gr.Button("Export", elem_id="concepts-export")
        delete_btn = gr.Button("Delete…", variant="stop", elem_id="concepts-delete")
    with gr.Row(visible=False) as confirm_row:
        confirm_text = gr.Markdown()
        yes_btn = gr.Button("Yes, delete it", variant="stop", elem_id="concepts-delete-yes")
        no_btn = gr.Button("Cancel", elem_id="concepts-delete-no")
    exported = gr.File(label="Exported file", interactive=False, elem_id="concepts-exported")
    details = gr.Markdown()
    meta = gr.JSON(label="concept.json")
    return SimpleNamespace(table=table, chosen=chosen, fmt=fmt, export_btn=export_btn, delete_btn=delete_btn,
                           confirm_row=confirm_row, confirm_text=confirm_text, yes_btn=yes_btn, no_btn=no_btn,
                           exported=exported, details=details, meta=meta)
