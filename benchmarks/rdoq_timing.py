"""Where a hybrid encode's RDOQ time goes: one ``fast`` encode per ``IMAGE:QUALITY``, one thread,
every RDOQ sweep run (``seconds=600``), with timers around :func:`codec.rdoq.optimise` and the
parts of the children's cost (:class:`codec.rdoq._ContextEffect`, 0.19) and of the neighbours'
(:class:`codec.rdoq._NeighbourEffect`, 0.20).  Prints one line per
encode: the file's size and the first 10 hex digits of its SHA-1 (to check that two versions write
the same bytes), the encode's seconds and each timer's total.  Run it with another version first on
``PYTHONPATH`` to compare::

    python benchmarks/rdoq_timing.py ../shared/data/kodak/kodim01.png:85 ../shared/data/kodak/kodim23.png:70
"""
from __future__ import annotations

import functools
import hashlib
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: its codec unless PYTHONPATH names another
    sys.path.append(str(Path(__file__).resolve().parents[1]))

import codec
from codec import imageio, rdoq, runtime

TIMED = [(rdoq, "optimise"), (rdoq._ContextEffect, "__init__"), (rdoq._ContextEffect, "start_phase"),
         (rdoq._ContextEffect, "cost"), (rdoq._ContextEffect, "_children"), (rdoq._ContextEffect, "_children_at"),
         (rdoq._BinCosts, "__init__"), (rdoq._NeighbourEffect, "__init__"), (rdoq._NeighbourEffect, "start_phase"),
         (rdoq._NeighbourEffect, "cost")]


def _timed(owner, name: str, totals: dict[str, float]) -> None:
    """Replace ``owner.name`` by a wrapper adding its seconds to ``totals``."""
    f = getattr(owner, name)
    key = f"{getattr(owner, '__name__', '').lstrip('_').rsplit('.', 1)[-1]}.{name}"

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)


def main(argv: list[str]) -> int:
    if not argv or any(":" not in a for a in argv):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runtime.set_threads(1)
    totals: dict[str, float] = {}
    for owner, name in TIMED:
        _timed(owner, name, totals)
    print(f"inrc {codec.__version__} from {Path(codec.__file__).parent}")
    for arg in argv:
        path, quality = arg.rsplit(":", 1)
        totals.clear()
        image = imageio.open_image(path)
        t = time.perf_counter()
        r = codec.encode_image(image, preset="fast", quality=int(quality), seconds=600, quiet=True)
        seconds = time.perf_counter() - t
        parts = " ".join(f"{k} {v:.2f}" for k, v in totals.items())
        print(f"{Path(path).name} q{quality}: {len(r.data)} B sha1 {hashlib.sha1(r.data).hexdigest()[:10]} "
              f"{seconds:.2f} s | {parts}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
