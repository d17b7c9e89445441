"""Progress bars on stderr for the encoders (tqdm), silent when stderr is not a terminal or with ``--quiet``.

* :class:`StepProgress`: the MLP fit, counted in training steps (with the training PSNR).
* :class:`TimeProgress`: the hybrid encoder, whose passes end on time, not on a count: the bar is
  the elapsed time against the encode's budget (``--seconds`` or the preset's cap), its description
  the stage and the inner loop's position (``medium pass 2: RDOQ sweep 3/8``), its postfix the best
  file so far.  The encoder's inner loops call :meth:`TimeProgress.tick` once per FISTA iteration
  and RDOQ plane; it redraws at most ten times a second (stage changes and a new best file at
  once), so a tick costs microseconds.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _stream(quiet: bool) -> TextIO | None:
    """stderr if a bar should be drawn on it."""
    if quiet or not sys.stderr.isatty():
        return None
    return sys.stderr


class _Bar:
    """What both bars share: ``bar``, a tqdm bar (``None`` when silent), removed by :meth:`close`."""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StepProgress(_Bar):
    """A step-counted bar (``fitting``), with the elapsed seconds and the training PSNR."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        self.bar = None
        stream = _stream(quiet)
        if stream is None:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="fitting", unit="step", file=stream, leave=False, dynamic_ncols=True)

    def update(self, step: int, elapsed: float, psnr: float) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"{elapsed:5.1f}s  {psnr:5.2f} dB", refresh=True)


class TimeProgress(_Bar):
    """A time bar from ``t_start`` (``time.perf_counter()``); drawn from :meth:`start` on."""

    MIN_INTERVAL = 0.1  # seconds between redraws of the inner loops' ticks

    def __init__(self, t_start: float, quiet: bool) -> None:
        self.t_start = t_start
        self.quiet = quiet
        self.stage_text = ""
        self.last_draw = 0.0
        self.bar = None

    @property
    def active(self) -> bool:
        """Whether the bar is drawn (what it shows need not be computed otherwise)."""
        return self.bar is not None

    def start(self, budget: float) -> None:
        """Draw the bar, against ``budget`` seconds from ``t_start``."""
        stream = _stream(self.quiet)
        if stream is None or self.bar is not None:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=round(max(budget, 0.1), 1), desc="encoding", file=stream, leave=False,
                        dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}")

    def stage(self, text: str) -> None:
        """A new stage (``medium pass 2 (refit)``, ``verifying``), drawn at once."""
        self.stage_text = text
        self.tick(force=True)

    def tick(self, detail: str | None = None, force: bool = False) -> None:
        """Move the bar to the elapsed time, ``detail`` (``RDOQ sweep 2/8``) after the stage; redrawn
        at most every ``MIN_INTERVAL`` seconds unless ``force``."""
        if self.bar is None:
            return
        now = time.perf_counter()
        self.bar.n = round(min(now - self.t_start, self.bar.total), 1)
        desc = f"{self.stage_text}: {detail}" if detail else self.stage_text
        if desc != self.bar.desc:
            self.bar.set_description_str(desc, refresh=False)
        if force or now - self.last_draw >= self.MIN_INTERVAL:
            self.bar.refresh()
            self.last_draw = now

    def best(self, nbytes: int, psnr: float) -> None:
        """The best file so far, drawn at once."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"best {nbytes:,} B {psnr:.2f} dB", refresh=True)
            self.last_draw = time.perf_counter()
