"""Per image and quality, the file of several hybrid curves with the lowest ``D + lambda R``: the
file that ``--basis auto`` would keep (codec/encoder.py) if each search wrote what these runs wrote.

    .venv/bin/python benchmarks/best_of_runs.py best=$R/kodak-fast-0.22.0:inrc-fast \\
        $S24:inrc-slow --out /tmp/best-of

The first argument names the new curve (``LABEL=``) and gives the first input; every argument is
``[LABEL=]RUN_DIR[,RUN_DIR...]:CURVE`` as for ``compare_runs.py``, whose :func:`cost` prices a row
(``lambda = RDOQ_LAMBDA Delta_0(q)^2``, the quality's trade-off, which both bases optimise for).
Only images and qualities every input has are kept.  Writes ``per_image.csv`` in ``inrc bench``'s
columns (curve ``LABEL``; ``encoder_stats`` names the input each row came from) for compare_runs.py.
This is a *derived* curve, not a run: an ``auto`` encode's search has the wavelet encode's second
less time than the run it stands for had.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import cost, load


def best_of(inputs: list[tuple[str, dict[str, dict[str, dict]]]], label: str) -> list[dict]:
    """Rows of the lowest-cost input per (image, setting) that every input has, relabelled ``label``."""
    images = sorted(set.intersection(*(set(rows) for _, rows in inputs)))
    out = []
    for image in images:
        settings = set.intersection(*(set(rows[image]) for _, rows in inputs))
        for setting in sorted(settings, key=int):
            name, row = min(((n, rows[image][setting]) for n, rows in inputs), key=lambda t: cost(t[1]))
            out.append({**row, "codec": label, "encoder_stats": json.dumps({"from": name})})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="+", help="LABEL=RUN_DIR[,...]:CURVE (the first), then RUN_DIR[,...]:CURVE")
    ap.add_argument("--out", required=True, help="a folder for per_image.csv")
    a = ap.parse_args(argv)
    label, eq, first = a.curves[0].partition("=")
    if not eq or len(a.curves) < 2:
        raise SystemExit("give LABEL=RUN_DIR:CURVE and at least one more curve")
    # each input is named by its position and curve (the name encoder_stats records)
    specs = [first] + [spec.partition("=")[2] if "=" in spec else spec for spec in a.curves[1:]]
    inputs = [load(f"{k}:{spec.rpartition(':')[2]}={spec}") for k, spec in enumerate(specs)]
    rows = best_of(inputs, label)
    if not rows:
        raise SystemExit("the curves have no image and quality in common")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    kept = {name: sum(json.loads(r["encoder_stats"])["from"] == name for r in rows) for name, _ in inputs}
    print(json.dumps({"rows": len(rows), "kept": kept}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
