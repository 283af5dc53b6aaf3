"""Write a tiny example of each benchmark layout (see data/README.md).

    python data/make_example.py data/examples        # mug19/, perseg/, hf/ (needs `datasets`), voc/
    personaseg bench personal data/examples/mug19 --model toy --steps 50 --out runs/example

The scenes are flat coloured shapes with exact masks: they show the layouts, they are not a
benchmark a model is expected to do well on (``personaseg toyworld make-bench`` writes that).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from personaseg.bench import examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write mug19/, perseg/, hf/ and voc/ into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, make in (("mug19", examples.make_mug19), ("perseg", examples.make_perseg),
                       ("voc", examples.make_voc)):
        path = make(args.out / name, seed=args.seed)
        print(f"wrote {path}")
    try:
        path = examples.make_hf(args.out / "hf", seed=args.seed)
        print(f"wrote {path}")
    except ImportError:
        print("skipped hf/: pip install datasets")


if __name__ == "__main__":
    main()
