"""Where annotators disagree: the records whose annotators scored one answer far apart, ranked, so an owner can have
them settle it (adjudication) before their scores feed the verdict and the training data.

A record's disagreement is the largest spread (highest score minus lowest) that the submitted responses of different
annotators give one of its answers; a record rated by fewer than two annotators has none. Records are ranked by it,
ties by the sum of the spreads over the record's answers (more answers in dispute first), then by record id, so the
order never depends on how the input was sorted. A record disagrees when its spread reaches
`analyze.disagreement_spread`.

analyze lists them in `reports/disagreements.md` from the annotations artifact, and push marks them `needs_review`
from the responses it reads on the server: both go through `rank_disagreements`, so the page and the mark agree on
the same responses. Answers are named by display position (Response 1, 2, ...), as annotators saw them, never by
model: the page may go to the annotators themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import pyarrow as pa

from llm_feedback.annotation.dataset_settings import REVIEW_MARK, REVIEW_METADATA
from llm_feedback.params import AnalyzeParams

INSTRUCTION_CHARS = 160  # of each record's instruction on the page: enough to find the record in the UI


@dataclass(frozen=True)
class Rating:
    """One annotator's submitted scores on one record, by display position (scores[0] is Response 1)."""

    record_id: str
    task_id: str
    annotator: str
    scores: tuple[int | None, ...]


@dataclass(frozen=True)
class Disagreement:
    """A record rated by two or more annotators: what each gave each answer, and each answer's spread."""

    record_id: str
    task_id: str
    scores: tuple[tuple[str, tuple[int | None, ...]], ...]  # (annotator, scores by position), annotators sorted
    spreads: tuple[int, ...]  # by position: highest minus lowest score (0 with fewer than two scores)

    @property
    def spread(self) -> int:
        """The record's disagreement: its most disputed answer's spread."""
        return max(self.spreads, default=0)


def rank_disagreements(ratings: Iterable[Rating]) -> list[Disagreement]:
    """Every record rated by two or more different annotators, the largest disagreement first (ties: the larger sum
    of spreads, then the record id). An annotator rating a record twice counts once, with the last rating given."""
    by_record: dict[str, dict[str, Rating]] = {}
    for rating in ratings:
        by_record.setdefault(rating.record_id, {})[rating.annotator] = rating
    found = []
    for record_id, by_annotator in by_record.items():
        if len(by_annotator) < 2:
            continue
        positions = max(len(r.scores) for r in by_annotator.values())
        spreads = []
        for position in range(positions):
            given = [r.scores[position] for r in by_annotator.values() if position < len(r.scores)]
            given = [score for score in given if score is not None]
            spreads.append(max(given) - min(given) if len(given) >= 2 else 0)
        scores = tuple((name, by_annotator[name].scores) for name in sorted(by_annotator))
        task_id = next(iter(by_annotator.values())).task_id
        found.append(Disagreement(record_id, task_id, scores, tuple(spreads)))
    return sorted(found, key=lambda d: (-d.spread, -sum(d.spreads), d.record_id))


def disagreeing(ranked: Sequence[Disagreement], *, min_spread: int) -> list[Disagreement]:
    """The ranked records whose annotators disagree: a spread of `min_spread` or more on some answer."""
    return [d for d in ranked if d.spread >= min_spread]


def ratings_from_annotations(annotations: pa.Table, *, exclude: Sequence[str] = ()) -> list[Rating]:
    """The submitted ratings of the annotations artifact, as analyze counts responses: a response holding a value
    outside the dataset's settings is left out whole, an annotator's repeated response counts once (the latest), and
    the annotators `analyze.exclude_annotators` names are left out. Stale scores count: on a record, every annotator
    rated the same text (push never changes a rated record's text), so they disagree about the same answers."""
    import pandas as pd

    from llm_feedback.analysis import usable_annotations

    rows, _ = usable_annotations(annotations.to_pandas())
    rows = rows[(rows["status"] == "submitted") & ~rows["annotator"].isin(list(exclude))]
    ratings = []
    for (record_id, task_id, annotator), given in rows.groupby(["record_id", "task_id", "annotator"], sort=True):
        by_position = {int(p): s for p, s in zip(given["position"], given["score"])}
        score = [by_position.get(p) for p in range(1, max(by_position) + 1)]
        scores = tuple(None if s is None or pd.isna(s) else int(s) for s in score)
        ratings.append(Rating(str(record_id), str(task_id), str(annotator), scores))
    return ratings


@dataclass(frozen=True)
class Found:
    """What analyze writes of the disagreements: the page, and the figure for metrics.json (None: no record has two
    annotators yet)."""

    page: str
    metrics: dict | None

    def line(self) -> str | None:
        """A part of analyze's summary when some records disagree."""
        count = self.metrics["disagreeing_records"] if self.metrics else 0
        return f"{count} records where annotators disagree" if count else None


def find_disagreements(
    annotations: pa.Table, *, params: AnalyzeParams, tasks: pa.Table, url: str | None, dataset_id: str | None
) -> Found:
    """analyze's part: the annotations artifact ranked, as reports/disagreements.md and a metrics figure; `url` and
    `dataset_id` (the push receipt's) make the link to the marked records in Argilla's UI."""
    ranked = rank_disagreements(ratings_from_annotations(annotations, exclude=params.exclude_annotators))
    instructions = dict(zip(tasks.column("task_id").to_pylist(), tasks.column("instruction").to_pylist()))
    page = disagreements_page(
        ranked,
        min_spread=params.disagreement_spread,
        limit=params.disagreements,
        instructions=instructions,
        link=marked_records_url(url, dataset_id) if url and dataset_id else None,
    )
    return Found(page, disagreement_metrics(ranked, min_spread=params.disagreement_spread))


def disagreement_metrics(ranked: Sequence[Disagreement], *, min_spread: int) -> dict | None:
    """For metrics.json: how many records two or more annotators rated, and how many of them disagree. None while
    no record has two annotators: a count of disagreements means nothing then."""
    if not ranked:
        return None
    return {"multi_rated_records": len(ranked), "disagreeing_records": len(disagreeing(ranked, min_spread=min_spread))}


def marked_records_url(url: str, dataset_id: str) -> str:
    """The dataset's annotation page in Argilla's UI filtered on the mark push sets, among the viewer's submitted
    records: where each annotator finds the disputed records they rated (Argilla 2.8's UI has no address per record)."""
    return (
        f"{url.rstrip('/')}/dataset/{quote(dataset_id)}/annotation-mode"
        f"?page=1&status=submitted&metadata={REVIEW_METADATA}.{REVIEW_MARK}"
    )


def disagreements_page(
    ranked: Sequence[Disagreement],
    *,
    min_spread: int,
    limit: int,
    instructions: Mapping[str, str],
    link: str | None,
) -> str:
    """reports/disagreements.md: the `limit` records whose annotators disagree most, each with every annotator's
    score of each answer by display position and the record's instruction (to find it in the UI); `instructions`
    maps task ids to instructions, `link` is the UI page of the marked records (None when unknown)."""
    found = disagreeing(ranked, min_spread=min_spread)
    lines = [
        "# Where annotators disagree",
        "",
        f"Records whose annotators' scores of one answer differ by {min_spread} points or more "
        "(`analyze.disagreement_spread`), the largest difference first (ties: the larger sum of differences over the "
        "record's answers). Answers are shown as annotators saw them, Response 1, 2, ...: this page names no model, "
        "so it can go to the annotators to settle their scores.",
        "",
        f'push marks these records `{REVIEW_METADATA}: {REVIEW_MARK}` ("Annotators disagree") in Argilla on its '
        "next run, and takes the mark off once their scores are close again.",
    ]
    if link:
        lines += ["", f"[Open the marked records in Argilla]({link}) (each annotator sees the ones they rated)."]
    lines += [
        "",
        f"{len(found)} of {len(ranked)} records rated by two or more annotators disagree"
        + (f"; the first {limit} are listed (`analyze.disagreements`)." if len(found) > limit else "."),
        "",
    ]
    for rank, d in enumerate(found[:limit], 1):
        positions = len(d.spreads)
        header = " | ".join(f"Response {p}" for p in range(1, positions + 1))
        lines += [
            f"## {rank}. Record {d.record_id}: scores {d.spread} points apart",
            "",
            *([f"Task {d.task_id}.", ""] if d.task_id != d.record_id else []),
            _quote(_excerpt(instructions.get(d.task_id, "(not in the tasks artifact)"))),
            "",
            f"| annotator | {header} |",
            "|---" * (positions + 1) + "|",
        ]
        for annotator, scores in d.scores:
            cells = " | ".join(_score(scores, p) for p in range(positions))
            lines.append(f"| {_cell(annotator)} | {cells} |")
        lines += [f"| spread | {' | '.join(str(s) for s in d.spreads)} |", ""]
    return "\n".join(lines)


def _score(scores: tuple[int | None, ...], position: int) -> str:
    return "-" if position >= len(scores) or scores[position] is None else str(scores[position])


def _excerpt(text: str) -> str:
    """The instruction's first line, cut to INSTRUCTION_CHARS; "..." says there is more."""
    text = text.strip()
    first = text.splitlines()[0] if text else ""
    shown = first[:INSTRUCTION_CHARS].rstrip()
    return f"{shown} ..." if shown != text else shown


def _quote(text: str) -> str:
    return f"> {text}" if text else ">"


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
