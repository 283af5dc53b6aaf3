"""Re-score concepts (TI or LoRA) a toy benchmark run already learned, with ``outline = "token"`` and ``"with-class"``.

``personaseg bench personal`` re-learns every concept when the model card changes (its cache key holds
the model's fingerprint), though a find setting cannot change what was learned. This script runs the
package's own ``find`` (the toy card's settings, only ``outline`` varied) on the learned concepts of an
earlier run: the same IoU (the mask against the ground-truth mask) and false positives (``found`` on
``absent`` scenes) as the benchmark; on seed 707 it reproduced both of the benchmark's runs exactly.

    python benchmarks/toy_outline_rescore.py BENCH_DIR CONCEPTS_DIR --out results.json
    # BENCH_DIR from `personaseg toyworld make-bench`, CONCEPTS_DIR = $PERSONASEG_HOME/bench-concepts
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np

from personaseg.provenance import provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("concepts", type=Path)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from PIL import Image

    from personaseg.bench.metrics import iou
    from personaseg.concepts.concept import Concept
    from personaseg.io import atomic_write
    from personaseg.segmenter import Segmenter

    base = Segmenter.from_pretrained("toy")
    segs = {o: Segmenter(base.pipe, base.card, dataclasses.replace(base.config, outline=o)) for o in ("token", "with-class")}
    index = [json.loads(line) for line in open(args.bench / "test" / "index.jsonl")]
    rows = []
    for folder in sorted(p for p in args.concepts.iterdir() if not p.name.startswith(".")):
        concept = Concept.from_folder(folder)
        name = re.fullmatch(r"bench-(.+)-(ti|lora)-[0-9a-f]+", folder.name).group(1)  # bench/learning.py's token
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "learned on another folder": the same weights, copied
            for seg in segs.values():
                seg.load_concept(concept)
        for entry in (e for e in index if e["concept"] == name):
            absent = "absent" in entry["subset"]
            gt = None if absent else np.asarray(Image.open(args.bench / "test" / entry["mask"])) > 0
            for outline, seg in segs.items():
                seg.set_image(args.bench / "test" / entry["image"])
                r = seg.find(concept.token)
                rows.append({"outline": outline, "concept": name, "subset": entry["subset"], "absent": absent,
                             "iou": None if gt is None else iou(r.mask, gt), "found": r.found})
    summary = {}
    for outline in segs:
        mine = [r for r in rows if r["outline"] == outline]
        present = [r for r in mine if not r["absent"]]
        miou = lambda sub: round(100 * float(np.mean([r["iou"] for r in present if sub is None or sub in r["subset"]])), 1)  # noqa: E731
        summary[outline] = {"all": miou(None), "alone": miou("alone"), "distractor": miou("distractor"),
                            "absent_fp": sum(r["found"] for r in mine if r["absent"]),
                            "absent_n": sum(r["absent"] for r in mine)}
    with atomic_write(args.out) as fh:
        fh.write(json.dumps({"bench": str(args.bench), "provenance": provenance("toy"), "summary": summary,
                               "rows": rows}, indent=1).encode())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
