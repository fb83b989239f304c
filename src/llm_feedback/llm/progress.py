"""Progress for long runs of requests: a tqdm bar per model on a terminal, plain periodic lines in logs and CI, each
labelled by the stage that runs them."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, totals: dict[str, int], every_s: float, *, label: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._label = label
        self._totals = totals
        self._done = dict.fromkeys(totals, 0)
        self._failed = dict.fromkeys(totals, 0)
        self._every_s = every_s
        self._started = time.monotonic()
        self._last_line = self._started
        self._bars: dict[str, tqdm] = {}
        if self._stream.isatty():
            width = max(map(len, totals), default=0)
            self._bars = {
                name: tqdm(
                    total=total,
                    desc=f"{label}: {name.ljust(width)}",
                    unit="req",
                    position=i,
                    file=self._stream,
                    leave=True,
                )
                for i, (name, total) in enumerate(totals.items())
            }

    def advance(self, model: str, ok: bool) -> None:
        self._done[model] += 1
        self._failed[model] += not ok
        if model in self._bars:
            self._bars[model].update(1)
            if not ok:
                self._bars[model].set_postfix(failed=self._failed[model], refresh=False)
        elif time.monotonic() - self._last_line >= self._every_s:
            self._last_line = time.monotonic()
            self._print_lines()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        if not self._bars and any(self._totals.values()):
            self._print_lines()

    def _print_lines(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        for model, total in self._totals.items():
            done = self._done[model]
            percent = 100 * done / total if total else 100
            print(
                f"{self._label}: {model}: {done}/{total} ({percent:.0f}%), {self._failed[model]} failed, "
                f"{done / elapsed:.1f} req/s",
                file=self._stream,
                flush=True,
            )
