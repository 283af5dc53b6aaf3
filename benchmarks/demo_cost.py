"""What ``personaseg demo`` costs with the shipped toy card and with a changed copy of it.

    python benchmarks/demo_cost.py --set learn.contrast_pairs=2 --rounds 2 --json benchmarks/results/demo-cost.json

In one process, alternating A (the shipped model, as ``personaseg demo`` runs it) and B (a copy of
the model folder whose ``personaseg.json`` has the ``--set`` changes), ``--rounds`` times each
(A B B A A B ...: each runs as often first as second). Reports every run's wall time per phase
(data, learn, find), its IoUs, and the ratio B / A of the median total. The demo's target is
<= 180 s on 2 CPU cores (issue 5); the ratio is the machine-independent part, the walls say what
this machine did that day.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from personaseg.provenance import provenance


def _parse_set(items: list[str]) -> list[tuple[list[str], object]]:
    changes = []
    for item in items:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. learn.contrast_pairs=2")
        changes.append((key.split("."), json.loads(value)))
    return changes


def changed_copy(changes, into: Path) -> Path:
    """A copy of the shipped toy model folder with its card changed."""
    from personaseg.toyworld import TOY_MODEL_DIR

    src = Path(TOY_MODEL_DIR)
    dst = into / "toy-changed"
    shutil.copytree(src, dst)
    card = json.loads((dst / "personaseg.json").read_text())
    for keys, value in changes:
        node = card
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    (dst / "personaseg.json").write_text(json.dumps(card, indent=2))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                    help="a change to the copy's personaseg.json (repeatable)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    changes = _parse_set(args.set)

    import torch

    from personaseg.toyworld.demo import run_demo

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {"A": "toy", "B": str(changed_copy(changes, tmp))}
        order = []
        for r in range(args.rounds):
            order += ["A", "B"] if r % 2 == 0 else ["B", "A"]
        for i, which in enumerate(order):
            start = time.process_time()
            res = run_demo(tmp / f"run{i}", model=models[which], progress=False)
            runs.append({"model": which, "seconds": res.seconds, "cpu_s": time.process_time() - start,
                         "iou": res.iou})
            print(f"{which}: {res.seconds['total']:.1f} s (learn {res.seconds['learn']:.1f} s)", flush=True)

    def med(which: str, key: str) -> float:
        return statistics.median(r["seconds"][key] for r in runs if r["model"] == which)

    out = {
        "changes": args.set, "rounds": args.rounds, "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(), "runs": runs, "provenance": provenance("toy"),
        "median_total_s": {w: med(w, "total") for w in "AB"},
        "median_learn_s": {w: med(w, "learn") for w in "AB"},
        "ratio_total_B_over_A": med("B", "total") / med("A", "total"),
        "ratio_learn_B_over_A": med("B", "learn") / med("A", "learn"),
    }
    print(json.dumps({k: out[k] for k in ("median_total_s", "ratio_total_B_over_A", "ratio_learn_B_over_A")}))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
