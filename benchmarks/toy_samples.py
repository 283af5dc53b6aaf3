"""Does the toy model draw recognisable scenes? Sample "a {colour} {shape}" and read the drawing back.

For every colour x shape prompt, draw N samples (``personaseg toyworld sample``'s settings) and
read each with :mod:`personaseg.toyworld.judge`: is there a blob of the named colour, and which
shape fits it best. The same judge on rendered scenes of the same prompts gives its ceiling, and on
those scenes passed through the model's VAE (encode, decode) the ceiling of anything the UNet draws.

    python benchmarks/toy_samples.py --out benchmarks/results/toy-samples.json [--model DIR] [--guidance G] [--seed S]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections import Counter

import numpy as np

from personaseg.provenance import provenance


def vae_roundtrip(vae, image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 encoded to the latent mean and decoded: what the VAE lets through."""
    import torch

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = vae.decode(vae.encode(x).latent_dist.mean).sample
    return ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a trained toy folder (default: the shipped model)")
    ap.add_argument("--n", type=int, default=4, help="samples per prompt")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0, help="prompt i draws with generator seed 1000 * seed + i")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise SystemExit(f"error: the folder of --out {args.out} does not exist (create it first)")

    import torch

    from personaseg.errors import PersonasegError
    from personaseg.io import atomic_write
    from personaseg.models import load_pipeline
    from personaseg.toyworld.judge import read_object
    from personaseg.toyworld.scenes import COLOURS, PATTERNS, SHAPES, article, make_scene

    torch.set_num_threads(2)
    try:
        pipe, _ = load_pipeline(args.model or "toy", dtype="float32")
    except PersonasegError as err:
        raise SystemExit(f"error: {err}") from None
    pipe.set_progress_bar_config(disable=True)
    rows, start = [], time.perf_counter()
    for i, (colour, shape) in enumerate(itertools.product(COLOURS, SHAPES)):
        prompt = f"{article(colour)} {colour} {shape}"
        gen = torch.Generator("cpu").manual_seed(1000 * args.seed + i)
        images = pipe([prompt] * args.n, num_inference_steps=args.steps, guidance_scale=args.guidance,
                      height=64, width=64, generator=gen, output_type="np").images  # (n, 64, 64, 3) in [0, 1]
        for k, im in enumerate(images):
            r = read_object((im * 255).round().astype(np.uint8), colour)
            rows.append({"source": "sample", "prompt": prompt, "colour": colour, "shape": shape, "k": k,
                         "colour_found": r.colour_found, "read": r.shape, "fit": round(r.fit, 3), "area": r.area})
        for k in range(args.n):  # the judge's ceiling: the scene generator's own drawings, and the VAE's
            scene = make_scene(10_000 * i + k, specs=[(shape, colour, PATTERNS[k % len(PATTERNS)])])
            for source, image in (("rendered", scene.image), ("vae", vae_roundtrip(pipe.vae, scene.image))):
                r = read_object(image, colour)
                rows.append({"source": source, "prompt": prompt, "colour": colour, "shape": shape, "k": k,
                             "colour_found": r.colour_found, "read": r.shape, "fit": round(r.fit, 3), "area": r.area})
        print(f"{prompt}: {[row['read'] for row in rows if row['source'] == 'sample'][-args.n:]}", flush=True)
    wall = time.perf_counter() - start

    summary = {}
    for source in ("sample", "rendered", "vae"):
        sel = [r for r in rows if r["source"] == source]
        found = [r for r in sel if r["colour_found"]]
        summary[source] = {
            "n": len(sel),
            "colour_found": len(found) / len(sel),
            "shape_right": sum(r["read"] == r["shape"] for r in sel) / len(sel),  # of all; chance 1/5 given a blob
            "shape_right_given_colour": sum(r["read"] == r["shape"] for r in found) / max(1, len(found)),
            "mean_fit": float(np.mean([r["fit"] for r in found])) if found else 0.0,
            "read_as": dict(Counter(r["read"] for r in found)),
            "per_shape_right": {s: sum(r["read"] == s for r in sel if r["shape"] == s) / max(1, sum(r["shape"] == s for r in sel))
                                for s in SHAPES},
        }
    report = {"model": args.model or "toy (shipped)", "provenance": provenance(args.model or "toy"), "n_per_prompt": args.n, "steps": args.steps,
              "guidance": args.guidance, "seed": args.seed, "wall_s": round(wall, 1), "summary": summary, "rows": rows}
    with atomic_write(args.out) as fh:
        fh.write(json.dumps(report, indent=1).encode())
    print(json.dumps({k: {m: v for m, v in s.items() if m != "per_shape_right"} for k, s in summary.items()}, indent=1))
    print(json.dumps({k: s["per_shape_right"] for k, s in summary.items()}))
    print(f"wall {wall:.0f}s -> {args.out}")


if __name__ == "__main__":
    main()
