"""Does the toy model's drawing follow the prompt's shape word, or only the layout it is given?

``toy_samples.py`` finds samples drawn from noise read as the named shape at chance. This asks why,
with diffusers' img2img pipeline on the same weights: start from a rendered scene noised to a
timestep (``strength`` x 1000) and denoise with the prompt "a {colour} {shape}". The init scene holds
either that very shape ("same") or another shape of the same colour ("other"). If the model drew
from the text, "other" would turn into the prompt's shape as the start grows noisier; if it only
denoises what x_t shows, it keeps the init's shape or loses it to a blob.

    python benchmarks/toy_shape_following.py --out benchmarks/results/toy-shape-following.json [--model DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import numpy as np

from personaseg.provenance import provenance


def prompt_shape(row: dict) -> str:
    """The shape word of a row's prompt ("a red circle" -> "circle")."""
    return row["prompt"].split()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a trained toy folder (default: the shipped model)")
    ap.add_argument("--strengths", default="0.5,0.7,1.0", help="start timesteps / 1000, comma-separated")
    ap.add_argument("--n", type=int, default=1, help="scenes per prompt and init kind")
    ap.add_argument("--steps", type=int, default=25, help="inference steps over the full schedule")
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise SystemExit(f"error: the folder of --out {args.out} does not exist (create it first)")
    try:
        strengths = [float(s) for s in args.strengths.split(",")]
    except ValueError:
        raise SystemExit(f"error: --strengths {args.strengths!r} is not a comma-separated list of numbers") from None

    import torch
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image

    from personaseg.errors import PersonasegError
    from personaseg.io import atomic_write
    from personaseg.models import load_pipeline
    from personaseg.toyworld.judge import read_object
    from personaseg.toyworld.scenes import COLOURS, SHAPES, article, make_scene

    torch.set_num_threads(2)
    try:
        pipe, _ = load_pipeline(args.model or "toy", dtype="float32")
    except PersonasegError as err:
        raise SystemExit(f"error: {err}") from None
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    rows, summary, start = [], {}, time.perf_counter()
    for strength in strengths:
        for i, (colour, shape) in enumerate(itertools.product(COLOURS, SHAPES)):
            prompt = f"{article(colour)} {colour} {shape}"
            other = SHAPES[(SHAPES.index(shape) + 2) % len(SHAPES)]
            for kind, init_shape in (("same", shape), ("other", other)):
                for k in range(args.n):
                    scene = make_scene(7000 + 10 * i + k, specs=[(init_shape, colour, "plain")])
                    gen = torch.Generator("cpu").manual_seed(100 * i + k)
                    im = img2img(prompt, image=Image.fromarray(scene.image), strength=strength,
                                 num_inference_steps=args.steps, guidance_scale=args.guidance, generator=gen,
                                 output_type="np").images[0]
                    r = read_object((im * 255).round().astype(np.uint8), colour)
                    rows.append({"strength": strength, "kind": kind, "prompt": prompt, "init_shape": init_shape,
                                 "read": r.shape, "fit": round(r.fit, 3)})
        sel = [r for r in rows if r["strength"] == strength]
        oth = [r for r in sel if r["kind"] == "other"]
        summary[str(strength)] = got = {
            "same_right": float(np.mean([r["read"] == prompt_shape(r) for r in sel if r["kind"] == "same"])),
            "other_prompt_shape": float(np.mean([r["read"] == prompt_shape(r) for r in oth])),
            "other_init_shape": float(np.mean([r["read"] == r["init_shape"] for r in oth])),
        }
        print(f"strength {strength}: same {100 * got['same_right']:.1f} % right; other: prompt's shape "
              f"{100 * got['other_prompt_shape']:.1f} %, init's {100 * got['other_init_shape']:.1f} %", flush=True)
    wall = time.perf_counter() - start

    report = {"model": args.model or "toy (shipped)", "provenance": provenance(args.model or "toy"), "n": args.n, "steps": args.steps, "guidance": args.guidance,
              "wall_s": round(wall, 1), "summary": summary, "rows": rows}
    with atomic_write(args.out) as fh:
        fh.write(json.dumps(report, indent=1).encode())
    print(json.dumps(summary, indent=1))
    print(f"wall {wall:.0f}s -> {args.out}")


if __name__ == "__main__":
    main()
