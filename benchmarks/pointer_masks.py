"""How close a box or a click gets to the full mask, before any learning: the mask `learn --box` /
`--click` derives from the class word's map, against each photo's true mask (IoU).

    python benchmarks/pointer_masks.py /tmp/toy1414 --model toy --json benchmarks/results/pointer-masks-seed1414.json

For every concept photo with a mask (``concepts/<name>/masks/<stem>.png``, as ``toyworld
make-bench`` writes them): the box is the mask's bounding box, the click its most interior pixel
(what ``bench personal --photo-boxes / --photo-clicks`` give ``learn``); a box or click the model
finds nothing at counts as IoU 0 (``learn`` would refuse it with one line).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--model", default="toy")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from personaseg.bench.data import mask_array
    from personaseg.bench.datasets import open_dataset
    from personaseg.bench.learning import interior_point
    from personaseg.concepts.masks import derive_mask
    from personaseg.config import FindConfig
    from personaseg.errors import InputError
    from personaseg.masks import bbox
    from personaseg.provenance import provenance
    from personaseg.segmenter import Segmenter

    data = open_dataset(args.root)
    seg = Segmenter.from_pretrained(args.model, config=FindConfig(keep="all"))  # as learn reads a box or click
    rows, t0 = [], time.perf_counter()
    for spec in data.concepts.values():
        for photo, mask in zip(spec.photos, spec.masks or []):
            if mask is None:
                continue
            gt = mask_array(mask, str(mask))
            seg.set_image(photo)
            class_mask = seg.find(spec.class_word).mask
            row = {"concept": spec.name, "photo": Path(photo).name, "class_word_iou": _iou(class_mask, gt)}
            for kind, value in (("box", bbox(gt)), ("click", interior_point(gt))):
                try:
                    got = derive_mask(class_mask, box=value if kind == "box" else None,
                                      click=value if kind == "click" else None, class_word=spec.class_word)
                    row[f"{kind}_iou"] = _iou(got, gt)
                except InputError:
                    row[f"{kind}_iou"] = 0.0
            rows.append(row)
            print(json.dumps(row))
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("class_word_iou", "box_iou", "click_iou")}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"root": str(args.root), "model": args.model, "summary": summary, "photos": rows,
                                         "seconds": time.perf_counter() - t0, "provenance": provenance(args.model)},
                                        indent=1))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = float((a | b).sum())
    return float((a & b).sum()) / union if union else 1.0


if __name__ == "__main__":
    main()
