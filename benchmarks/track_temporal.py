"""Temporal mode vs per-frame find on the toy video benchmark, with a phrase (no learning needed).

For every sequence of a `personaseg toyworld make-video-bench` root, the object's class word is
tracked twice through the first --frames frames: temporal mode (TrackConfig defaults: 2 draws per
frame, 2 neighbours averaged on each side) and per-frame mode (find's own D = 10 draws per frame).
J, F and J&F (DAVIS's, personaseg.bench.jf) per tag, frames/s (wall, this process, model loaded)
and UNet rows per frame are reported. The class word marks every object of its class, so the
figures are low on distractor sequences by design; what is compared is the two modes.

    python benchmarks/track_temporal.py ROOT --frames 8 --json benchmarks/results/track-temporal.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from personaseg.bench.davis import open_video_dataset
from personaseg.bench.jf import frame_scores
from personaseg.segmenter import Segmenter
from personaseg.track import TrackConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--model", default="toy")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = open_video_dataset(args.root)
    seg = Segmenter.from_pretrained(args.model, device="cpu")
    rows = []
    for t in data.targets:
        for mode in ("temporal", "per-frame"):
            start, js, fs, used = time.perf_counter(), [], [], 0
            absent = reported = 0
            for r in seg.track(t.frames[:args.frames], t.concept.class_word,
                               config=TrackConfig(temporal=mode == "temporal")):
                gt = t.gt(r.index)
                j, f = frame_scores(r.mask, gt)
                js.append(j)
                fs.append(f)
                used += r.unet_rows
                if not gt.any():
                    absent, reported = absent + 1, reported + int(not r.found)
            seconds = time.perf_counter() - start
            rows.append({"sequence": t.seq, "tags": t.tags, "mode": mode, "phrase": t.concept.class_word,
                         "J": float(np.mean(js)), "F": float(np.mean(fs)), "frames": len(js),
                         "frames_per_s": len(js) / seconds, "unet_rows_per_frame": used / len(js),
                         "absent_frames": absent, "absent_reported": reported})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for mode in ("temporal", "per-frame"):
        mine = [r for r in rows if r["mode"] == mode]
        groups = {"all": mine, **{tag: [r for r in mine if tag in r["tags"]] for tag in data.tags}}
        summary[mode] = {g: {"n": len(rs), "J": float(np.mean([r["J"] for r in rs])),
                             "F": float(np.mean([r["F"] for r in rs])),
                             "J&F": float(np.mean([(r["J"] + r["F"]) / 2 for r in rs]))} for g, rs in groups.items() if rs}
        frames = sum(r["frames"] for r in mine)
        summary[mode]["frames_per_s"] = frames / sum(r["frames"] / r["frames_per_s"] for r in mine)
        summary[mode]["unet_rows_per_frame"] = sum(r["unet_rows_per_frame"] * r["frames"] for r in mine) / frames
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"root": str(args.root), "model": args.model, "frames": args.frames,
                                         "find": vars(seg.config) | {"pad_rgb": list(seg.config.pad_rgb)},
                                         "track": vars(TrackConfig()), "summary": summary, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
