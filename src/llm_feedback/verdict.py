"""The one line that answers "which model wins, and how sure are we": the same words in analyze's summary line, at the
top of reports/report.md and as `verdict` in metrics.json."""

from __future__ import annotations

from dataclasses import dataclass

from llm_feedback.stats import Interval


@dataclass(frozen=True)
class Comparison:
    """Model `first` minus model `second` on the tasks both (and every other compared model) have current scores."""

    first: str
    second: str
    difference: Interval
    p_value: float | None
    p_holm: float | None
    decided: bool
    tasks: int
    tasks_for_power: int | None  # tasks needed for 80% power at the smallest difference that matters
    held_back: str | None = None  # why a difference that passed its test is still not called decided

    @property
    def winner(self) -> str:
        return self.first if (self.difference.estimate or 0.0) >= 0 else self.second

    @property
    def loser(self) -> str:
        return self.second if self.winner == self.first else self.first

    def signed(self) -> tuple[float, float, float]:
        """The difference and its interval from the winner's side (positive when decided)."""
        d = self.difference
        if self.winner == self.first:
            return d.estimate, d.low, d.high
        return -d.estimate, -d.high, -d.low


def verdict_line(
    comparisons: list[Comparison], means: dict[str, float | None], *, confidence: float, min_difference: float
) -> str:
    """`means`: each compared model's mean on the same tasks, for the ranking of three or more."""
    level = f"{100 * confidence:g}% CI"
    scored = [c for c in comparisons if c.difference.estimate is not None]
    if not scored:
        return "no verdict yet: no task has current scores for every compared model"
    if len(comparisons) == 1:
        return _one_pair(scored[0], level, min_difference)
    ranked = sorted((m for m, v in means.items() if v is not None), key=lambda m: -means[m])
    parts = [f"ranking on {scored[0].tasks} tasks: " + ", ".join(f"{m} {means[m]:.2f}" for m in ranked)]
    decided = [c for c in scored if c.decided]
    if decided:
        parts.append(
            "decided: "
            + ", ".join(f"{c.winner} beats {c.loser} by {_points(c)} ({_details(c, level, 'Holm p')})" for c in decided)
        )
    undecided = [c for c in scored if not c.decided]
    if undecided:
        parts.append(
            "not decided: "
            + ", ".join(
                f"{c.first} vs {c.second} {_points(c, signed=False)} ({_details(c, level, 'Holm p')})"
                + (f" ({c.held_back})" if c.held_back else "")
                for c in undecided
            )
        )
    return "; ".join(parts)


def _one_pair(c: Comparison, level: str, min_difference: float) -> str:
    if c.decided:
        return f"{c.winner} beats {c.loser} by {_points(c)} ({_details(c, level, 'p')}, {c.tasks} tasks)"
    d = c.difference
    difference = f"{c.first} - {c.second} = {_points(c, signed=False)}"
    head = f"not decided: {difference} ({_details(c, level, 'p')}) on {c.tasks} tasks"
    if c.held_back:
        return f"{head}; {c.held_back}"
    if d.low is not None and -min_difference < d.low and d.high < min_difference:
        return f"{head}; a gap of {min_difference:g} points or more is ruled out"
    if c.tasks_for_power is None:
        return head
    more = max(c.tasks_for_power - c.tasks, 1)
    return f"{head}; about {more} more tasks for 80% power at a {min_difference:g}-point difference"


def _points(c: Comparison, *, signed: bool = True) -> str:
    value = c.signed()[0] if signed else c.difference.estimate
    return f"{value:+.2f} points"


def _details(c: Comparison, level: str, p_name: str) -> str:
    """ "95% CI +0.90 to +1.70, p < 0.001", from the winner's side when decided."""
    _, low, high = c.signed() if c.decided else (None, c.difference.low, c.difference.high)
    interval = f"{level} {low:+.2f} to {high:+.2f}" if low is not None else "too few tasks for an interval"
    p = c.p_holm if c.p_holm is not None else c.p_value
    if p is None:
        return interval
    return f"{interval}, {p_name} < 0.001" if p < 0.001 else f"{interval}, {p_name} = {p:.3f}"
