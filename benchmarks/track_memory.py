"""Peak memory of `Segmenter.track` against a clip's length: frames are streamed, so it stays flat.

For each length N a toy clip (64 px toy scenes with a moving circle) is written as an mp4, then a
fresh process loads the model and tracks "circle" through the whole clip (decoded frame by frame
with PyAV) and reports its peak RSS (``ru_maxrss``) and how much it grew after the model was
loaded and the first batch was done, in each mode (temporal, track's default, and per-frame find;
``--draws`` noise draws per frame in both). The default model is the tiny random pipeline of the tests (the
figure is about streaming, not the model; ``--model toy`` for the shipped one).

    python benchmarks/track_memory.py --frames 100,1000 --modes temporal,per-frame --json benchmarks/results/track_memory.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from personaseg.provenance import provenance

HERE = Path(__file__).resolve().parent


def clip(path: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    from personaseg.toyworld.scenes import ToyObject, draw
    from personaseg.video import OverlayWriter

    with OverlayWriter(path, fps=25) as out:
        for t in range(n):
            obj = ToyObject("circle", "red", "plain", 12 + (t % 40), 32, 18)
            image, _ = draw([obj], np.random.default_rng(0))
            out.write(Image.fromarray(image))
    return path


def child(model: str, video: str, draws: int, mode: str) -> None:
    """Run in a fresh process: track the clip, print JSON with the peak RSS."""
    import torch

    from personaseg.config import FindConfig
    from personaseg.segmenter import Segmenter
    from personaseg.track import TrackConfig
    from personaseg.video import open_clip

    torch.set_num_threads(1)
    seg = Segmenter.from_pretrained(model, device="cpu", config=FindConfig(long_side=64, draws=draws))
    start, frames, after_first = time.perf_counter(), 0, None
    cfg = TrackConfig(temporal=mode == "temporal", draws=draws)
    for r in seg.track(open_clip(video).frames(), "circle", config=cfg):
        frames += 1
        if frames == cfg.batch:
            after_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": frames, "peak_rss_mb": round(peak, 1),
                      "growth_after_first_batch_mb": round(peak - (after_first or peak), 1),
                      "seconds": round(time.perf_counter() - start, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", default="100,1000")
    ap.add_argument("--model", default=None, help="default: the tests' tiny random pipeline")
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--modes", default="temporal,per-frame")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(HERE.parent / "tests"))
            from tiny import build_tiny_pipeline

            model = str(Path(tmp) / "tiny")
            build_tiny_pipeline(Path(model))
        rows = []
        for n in (int(x) for x in args.frames.split(",")):
            video = clip(Path(tmp) / f"clip{n}.mp4", n)
            for mode in args.modes.split(","):
                out = subprocess.run([sys.executable, __file__, "--child", model, str(video), str(args.draws), mode],
                                     check=True, capture_output=True, text=True)
                rows.append({"clip_frames": n, "mode": mode, **json.loads(out.stdout.strip().splitlines()[-1])})
                print(rows[-1], flush=True)
        prov = provenance(model)
        if args.model is None:
            prov["model"] = "tiny random (tests/tiny.py)"  # built in a temporary folder; the fingerprint names it
    result = {"model": args.model or "tiny random (tests/tiny.py)", "draws_per_frame": args.draws,
              "machine": platform.platform(), "rows": rows, "provenance": prov}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
