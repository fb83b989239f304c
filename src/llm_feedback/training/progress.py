"""What a training run shows while it goes, and what it counts: a bar on a terminal (the Trainer's own), plain lines
in logs and CI, and the steps this process ran (a resumed run repeats none)."""

from __future__ import annotations

import sys
import time
from typing import Any

from transformers import TrainerCallback


class Progress(TrainerCallback):
    """Counts the optimizer steps run here; off a terminal, prints a line every `every_s` seconds and at the end."""

    def __init__(self, *, phase: str, every_s: float, lines: bool) -> None:
        self.phase, self.every_s, self.lines = phase, every_s, lines
        self.resumed_at = 0
        self.steps_run = 0
        self.tokens_at_start = 0
        self._loss: float | None = None
        self._last = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.resumed_at = state.global_step
        self.tokens_at_start = state.num_input_tokens_seen
        self._last = time.monotonic()
        if self.lines and self.resumed_at:
            self._print(f"resumed at step {self.resumed_at} of {state.max_steps}")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps_run += 1
        if self.lines and time.monotonic() - self._last >= self.every_s:
            self._report(state)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.lines:
            self._report(state)

    def _report(self, state: Any) -> None:
        self._last = time.monotonic()
        share = state.global_step / state.max_steps if state.max_steps else 1.0
        loss = "" if self._loss is None else f", loss {self._loss:.4g}"
        self._print(f"step {state.global_step}/{state.max_steps} ({share:.0%}){loss}")

    def _print(self, text: str) -> None:
        print(f"train: {self.phase}: {text}", file=sys.stderr, flush=True)


def loss_curve(log_history: list[dict]) -> list[tuple[int, float]]:
    """(step, loss) of each logged training step, as the Trainer keeps them (a resumed run's include the steps
    before its checkpoint)."""
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry]
