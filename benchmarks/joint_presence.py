"""Re-read recorded `bench personal` finds with presence taken on the joint map (issue 23's misfires).

The offline study behind find's joint presence (records toy-joint-presence-*.json, made before find
read it so: there, find read a concept's presence on its token's raw cross-attention map). Most absent-scene misfires on
the toy model put the concept's colour and its shape on two different objects (benchmarks/RESULTS.md,
"Why the misfires stay"): the token's map peaks on one of them. This script reads, for every recorded
sample of one method, the peak of sqrt(token map x class-word map) (raw maps on find's finest cross
grid, averaged over draws), divided by the same reading's mean on the concept's own photos, and counts
misfires and lost present scenes at a few thresholds of that share. Nothing is relearned: the concepts
come from the run's --concepts-dir. A present scene the joint rule keeps is scored with its recorded
IoU (for one the token rule had dropped, that is an empty mask's: a lower bound). Each row also
re-reads the token's own relative presence the same way; the summary's ``token_vs_record`` (largest
difference to the recorded one) says the re-reading is the recorded find.

    python benchmarks/joint_presence.py --method ti --concepts-dir cc --json out.json BENCH:RUN/samples.jsonl ...

It reproduces those records at code 0443596 on runs recorded before 2d2cd62. Since then find reads the
joint presence itself (``FindResult.joint_presence``; a run's samples hold its relative presence), so
``token_vs_record`` no longer holds on newer runs: this script is kept as the study's record.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from personaseg import t2m
from personaseg.provenance import provenance
from personaseg.segmenter import Segmenter

THRESHOLDS = (0.7, 0.8, 0.9)


def read(seg: Segmenter, phrase: str) -> tuple[bool, float, float]:
    """(found, token presence, joint presence) of ``phrase`` (a concept with a class word) on the set image."""
    found = seg.find(phrase).found
    text, phrase_text, concept, adapter = seg._resolve(phrase, None)
    att = seg._attention(text, adapter)  # the passes find just ran (cached for the image)
    cls_text, cls_phrase, _, _ = seg._resolve(concept.class_word, None)
    catt = seg._attention(cls_text, None)
    grid = t2m.finest_grid(att.grids)
    tok = t2m.cross_map(att.cross, att.grids, grid, seg.positions(text, [phrase_text])[0]).mean(0)
    cls = t2m.cross_map(catt.cross, catt.grids, grid, seg.positions(cls_text, [cls_phrase])[0]).mean(0)
    return found, float(tok.max()), float((tok.clamp_min(0) * cls.clamp_min(0)).sqrt().max())


def summary(rows: list[dict]) -> dict:
    absent = [r for r in rows if r["absent"]]
    present = [r for r in rows if not r["absent"]]
    out = {"n_absent": len(absent), "n_present": len(present),
           "token_vs_record": max(abs(r["rel_token"] - r["relative_presence"]) for r in rows),
           "token_rule": {"misfires": sum(r["found"] for r in absent), "mIoU": float(np.mean([r["iou"] for r in present]))}}
    for t in THRESHOLDS:
        lost = [r for r in present if r["rel_joint"] < t]
        out[f"joint>={t}"] = {"misfires": sum(r["rel_joint"] >= t for r in absent), "present_lost": len(lost),
                              "mIoU": float(np.mean([0.0 if r["rel_joint"] < t else r["iou"] for r in present]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="BENCH_ROOT:SAMPLES_JSONL of bench personal runs")
    ap.add_argument("--method", default="ti")
    ap.add_argument("--concepts-dir", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    seg = Segmenter.from_pretrained("toy", concepts_dir=args.concepts_dir)
    rows = []
    for run in args.runs:
        root, samples = (Path(p) for p in run.split(":", 1))
        recs = [r for r in map(json.loads, samples.read_text().splitlines()) if r["method"] == args.method]
        refs: dict[str, np.ndarray] = {}  # concept -> mean (token, joint) presence on its own photos
        for r in recs:
            if r["concept"] not in refs:
                photos = sorted(glob.glob(str(root / "concepts" / r["concept"] / "photos" / "*")))
                reads = []
                for photo in photos:
                    seg.set_image(photo)
                    reads.append(read(seg, r["phrase"])[1:])
                refs[r["concept"]] = np.mean(reads, axis=0)
            seg.set_image(root / "test" / r["image"])
            found, token, joint = read(seg, r["phrase"])
            ref_token, ref_joint = refs[r["concept"]]
            rows.append({"bench": str(root), "image": r["image"], "concept": r["concept"], "absent": r["absent"],
                         "iou": r["iou"], "found": found, "relative_presence": r["relative_presence"],
                         "rel_token": token / ref_token, "rel_joint": joint / ref_joint})
    result = {"method": args.method, "runs": args.runs, "summary": summary(rows), "rows": rows,
              "provenance": provenance("toy")}
    print(json.dumps(result["summary"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
