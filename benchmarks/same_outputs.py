"""Same outputs before and after a restructure: find, segment, explain, track and a short learn on the toy model.

    # at the old commit (e.g. an exported tree) and at the new one, then compare:
    PYTHONPATH=/tmp/old python benchmarks/same_outputs.py run /tmp/before.npz
    python benchmarks/same_outputs.py run /tmp/after.npz
    python benchmarks/same_outputs.py diff /tmp/before.npz /tmp/after.npz   # "N arrays compared, 0 differ"

``run`` learns ``<redc>`` (20 steps, presence measured) from four toy photos, then saves the learned
embedding, presence_ref and class_presence_ref, and every mask, score map, presence and verdict of
find (phrases and the concept, card settings and a refined run), segment, explain and track (per-frame
and temporal) on toy scenes. ``diff`` compares them exactly (bit for bit). About 5 minutes on 2 CPUs.
"""

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np


def run(path: str, steps: int = 20) -> None:
    import json

    import torch
    from PIL import Image
    from safetensors.numpy import load_file

    from personaseg import Segmenter
    from personaseg.concepts import LearnConfig, learn
    from personaseg.toyworld import make_scene
    from personaseg.track import TrackConfig

    torch.manual_seed(0)
    out = {}
    tmp = Path(tempfile.mkdtemp())
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(4):
        Image.fromarray(make_scene(100 + i, specs=[("circle", "red", "striped")]).image).save(photos / f"p{i}.png")
    store = tmp / "store"
    warnings.simplefilter("ignore")
    c = learn(photos, "<redc>", LearnConfig(class_word="circle", steps=steps, checkpoint_every=0), model="toy",
              concepts_dir=store, progress=False)
    for k, v in load_file(str(c.path / "learned_embeds.safetensors")).items():
        out[f"emb/{k}"] = v
    meta = json.loads((c.path / "concept.json").read_text())
    out["presence_ref"] = np.float64(meta["presence_ref"])
    out["class_presence_ref"] = np.float64(meta["class_presence_ref"])
    seg = Segmenter.from_pretrained("toy", concepts_dir=store)
    for s in range(5):
        seg.set_image(Image.fromarray(make_scene(s, n_objects=(2, 4)).image))
        for ph in ["circle", "red circle", "square", "<redc>"]:
            r = seg.find(ph)
            out[f"{s}/{ph}/mask"], out[f"{s}/{ph}/scores"] = r.mask, r.scores
            out[f"{s}/{ph}/presence"] = np.float64(r.presence)
            out[f"{s}/{ph}/rel"] = np.float64(np.nan if r.relative_presence is None else r.relative_presence)
            out[f"{s}/{ph}/found"] = np.bool_(r.found)
        sr = seg.segment(["circle", "<redc>"], background=False)
        out[f"{s}/segment"], out[f"{s}/segment/scores"] = sr.label_map, sr.scores
        out[f"{s}/explain"] = seg.explain("<redc>").maps
    refined = Segmenter.from_pretrained("toy", concepts_dir=store, refine=True, draws=2, keep="all", outline="token")
    refined.set_image(Image.fromarray(make_scene(7, n_objects=(2, 3)).image))
    for ph in ["circle", "<redc>"]:
        r = refined.find(ph)
        out[f"r/{ph}/mask"], out[f"r/{ph}/scores"] = r.mask, r.scores
    frames = [Image.fromarray(make_scene(50 + i, specs=[("circle", "red", "plain"), ("square", "blue", "plain")]).image)
              for i in range(4)]
    for temporal in (False, True):
        for fr in seg.track(frames, "<redc>", config=TrackConfig(temporal=temporal, batch=2)):
            out[f"t{temporal}/{fr.index}/mask"], out[f"t{temporal}/{fr.index}/scores"] = fr.mask, fr.scores
    np.savez(path, **out)
    print(f"saved {len(out)} arrays to {path}")


def diff(a_path: str, b_path: str) -> int:
    a, b = np.load(a_path), np.load(b_path)
    if set(a.files) != set(b.files):
        print("different arrays:", sorted(set(a.files) ^ set(b.files)))
        return 1
    bad = [k for k in a.files if not np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")]
    print(f"{len(a.files)} arrays compared, {len(bad)} differ", bad[:10])
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        sys.exit(diff(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
