"""What find's earlier presence rule would have said on `bench personal` runs made with the joint presence.

Since 2d2cd62 a concept drawn with its class word is found when its joint presence is at least
``min_relative_presence`` (the toy card: 0.85) of learn's same reading on its photos. Before, the
token's own presence was compared with its own reference at 0.7. Learn now stores both references
(``presence_ref`` and ``token_presence_ref``) and every sample records the token's presence, so the
earlier rule is re-read from the records exactly, with no UNet pass: per run and method, absent
scenes it would have "found" (misfires) and present scenes it would have dropped, beside the run's own.

    python benchmarks/token_rule.py --concepts-dir cc --json out.json RUN_DIR ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from personaseg.provenance import provenance

TOKEN_RULE = 0.7  # the toy card's min_relative_presence on the token's own presence, before 2d2cd62


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="bench personal run folders (samples.jsonl)")
    ap.add_argument("--concepts-dir", type=Path, required=True, help="the concept store the runs learned into")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    summary: dict[str, dict] = {}
    for run in args.runs:
        for line in (run / "samples.jsonl").read_text().splitlines():
            r = json.loads(line)
            if "error" in r or not r["phrase"].startswith("<"):
                continue
            meta = json.loads((args.concepts_dir / r["phrase"].strip("<>") / "concept.json").read_text())
            token_found = r["presence"] / meta["token_presence_ref"] >= TOKEN_RULE
            s = summary.setdefault(f"{run.name}/{r['method']}", dict.fromkeys(
                ("absent", "misfires_token_rule", "misfires_run", "present", "lost_token_rule", "lost_run"), 0))
            if r["absent"]:
                s["absent"] += 1
                s["misfires_token_rule"] += token_found
                s["misfires_run"] += r["found"]
            else:
                s["present"] += 1
                s["lost_token_rule"] += not token_found
                s["lost_run"] += not r["found"]
    for key, s in summary.items():
        print(key, s)
    if args.json:
        args.json.write_text(json.dumps({"runs": [str(r) for r in args.runs], "token_rule": TOKEN_RULE,
                                         "summary": summary, "provenance": provenance("toy")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
