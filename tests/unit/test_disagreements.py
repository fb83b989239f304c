"""Where annotators disagree: the ranking on known inputs, the ratings read from the annotations artifact and from
the server's responses, the page analyze writes (blind: no model named), and the marks push derives from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.analysis import analyze
from llm_feedback.annotation.pull import Asked
from llm_feedback.annotation.push import Pushed
from llm_feedback.annotation.receipt import Receipt
from llm_feedback.annotation.record_pages import ServerRecord
from llm_feedback.annotation.records import AnnotationRecord
from llm_feedback.annotation.review import ReviewMarks, ratings_on_server, without_mark
from llm_feedback.artifacts import ANNOTATIONS, TASKS, text_sha
from llm_feedback.disagreements import (
    Rating,
    disagreeing,
    disagreement_metrics,
    disagreements_page,
    marked_records_url,
    rank_disagreements,
    ratings_from_annotations,
)
from llm_feedback.params import AnalyzeParams, Params
from llm_feedback.report import write_reports
from llm_feedback.testing.synthetic_annotations import generations_for, response_text

MODELS = ["secret-model-alpha", "secret-model-beta"]  # names that must never reach the page
STAMP = datetime(2026, 1, 1, tzinfo=UTC)


def rating(record: str, annotator: str, *scores: int | None) -> Rating:
    return Rating(record, record.partition(".")[0], annotator, tuple(scores))


def test_records_are_ranked_by_their_largest_spread_then_the_sum_then_the_id() -> None:
    ratings = [
        rating("r1", "a", 7, 3),
        rating("r1", "b", 2, 4),  # spreads 5, 1
        rating("r2", "a", 4, 4),
        rating("r2", "b", 2, 6),  # 2, 2
        rating("r3", "a", 7, 0),
        rating("r3", "b", 2, 3),  # 5, 3: as far apart as r1 on one answer, further on the other
        rating("r5", "a", 5, 5),
        rating("r5", "b", 5, 5),  # agree
    ]
    ranked = rank_disagreements(ratings)
    assert [(d.record_id, d.spread, d.spreads) for d in ranked] == [
        ("r3", 5, (5, 3)),
        ("r1", 5, (5, 1)),
        ("r2", 2, (2, 2)),
        ("r5", 0, (0, 0)),
    ]
    assert ranked[1].scores == (("a", (7, 3)), ("b", (2, 4))), "each annotator's scores, by display position"
    assert rank_disagreements(reversed(ratings)) == ranked, "the input's order never matters"
    assert [d.record_id for d in disagreeing(ranked, min_spread=3)] == ["r3", "r1"]
    assert disagreeing(ranked, min_spread=6) == []


def test_ties_go_to_the_record_id() -> None:
    ratings = [rating(r, a, s) for r in ("t-b", "t-c", "t-a") for a, s in (("x", 1), ("y", 4))]
    assert [d.record_id for d in rank_disagreements(ratings)] == ["t-a", "t-b", "t-c"]


def test_a_record_of_one_annotator_is_no_disagreement_even_when_rated_twice() -> None:
    ratings = [rating("solo", "a", 0, 0), rating("solo", "a", 7, 7), rating("pair", "a", 3), rating("pair", "b", 3)]
    ranked = rank_disagreements(ratings)
    assert [d.record_id for d in ranked] == ["pair"] and ranked[0].spread == 0
    assert rank_disagreements([rating("pair", "a", 1), rating("pair", "b", 6), rating("pair", "a", 6)])[0].spread == 0
    assert rank_disagreements([]) == [] and disagreement_metrics([], min_spread=3) is None


def test_three_annotators_spread_from_lowest_to_highest_and_a_missing_score_is_skipped() -> None:
    ranked = rank_disagreements([rating("r", "a", 2, None), rating("r", "b", 6, 4), rating("r", "c", 4, None)])
    assert ranked[0].spreads == (4, 0), "one score of an answer has no spread"
    assert disagreement_metrics(ranked, min_spread=4) == {"multi_rated_records": 1, "disagreeing_records": 1}
    assert disagreement_metrics(ranked, min_spread=5) == {"multi_rated_records": 1, "disagreeing_records": 0}


def annotation_rows(record: str, annotator: str, scores: list[int | None], **extra: object) -> list[dict]:
    """One response as pull writes it: a row per display position, the model at position p being MODELS[p - 1]."""
    return [
        {
            "record_id": record,
            "task_id": record.partition(".")[0],
            "annotator": annotator,
            "model": MODELS[p - 1],
            "position": p,
            "response_sha": text_sha(response_text(record.partition(".")[0], MODELS[p - 1])),
            "score": score,
            "status": "submitted",
            "to_correct": None,
            "corrected_response": None,
            "comments": None,
            "updated_at": STAMP,
            "problem": None,
            **extra,
        }
        for p, score in enumerate(scores, 1)
    ]


def annotations(*responses: list[dict]) -> pa.Table:
    return ANNOTATIONS.validate(
        pa.Table.from_pylist([row for rows in responses for row in rows], schema=ANNOTATIONS.schema), "annotations"
    )


def test_ratings_from_annotations_count_what_analyze_counts() -> None:
    table = annotations(
        annotation_rows("t1", "ann", [7, 1]),
        annotation_rows("t1", "bob", [1, 1]),
        annotation_rows("t1", "cat", [0, 7], problem="comments is int, not text"),  # left out whole
        annotation_rows("t1", "dan", [None, None], status="draft"),
        annotation_rows("t1", "eve", [3, 3], status="submitted"),
        annotation_rows("t2", "ann", [6, 6]),
        annotation_rows("t2", "bob", [2, 2]),
        annotation_rows("t2", "bob", [6, 6], updated_at=STAMP + timedelta(minutes=1)),  # bob changed his mind
    )
    ratings = ratings_from_annotations(table, exclude=["eve"])
    assert sorted((r.record_id, r.annotator, r.scores) for r in ratings) == [
        ("t1", "ann", (7, 1)),
        ("t1", "bob", (1, 1)),
        ("t2", "ann", (6, 6)),
        ("t2", "bob", (6, 6)),
    ]
    ranked = rank_disagreements(ratings)
    assert [(d.record_id, d.spread) for d in ranked] == [("t1", 6), ("t2", 0)]
    assert ratings_from_annotations(ANNOTATIONS.schema.empty_table()) == []


def test_the_page_lists_the_worst_first_blind_with_a_link_and_the_instruction() -> None:
    table = annotations(
        annotation_rows("t1", "ann", [7, 1]),
        annotation_rows("t1", "bob", [1, 2]),
        annotation_rows("t2.abcd1234", "ann", [5, 0]),
        annotation_rows("t2.abcd1234", "bob", [2, 4]),
        annotation_rows("t3", "ann", [4, 4]),
        annotation_rows("t3", "bob", [5, 4]),
    )
    ranked = rank_disagreements(ratings_from_annotations(table))
    link = marked_records_url("http://127.0.0.1:6900/", "0b5e-id")
    assert link == (
        "http://127.0.0.1:6900/dataset/0b5e-id/annotation-mode?page=1&status=submitted&metadata=needs_review.yes"
    )
    instructions = {"t1": "Write `f` | that returns 1.\nMore details.", "t2": "x" * 300}
    page = disagreements_page(ranked, min_spread=3, limit=20, instructions=instructions, link=link)
    assert not any(model in page for model in MODELS) and "alpha" not in page, "the page names no model"
    assert page.startswith("# Where annotators disagree\n") and f"]({link})" in page
    assert "2 of 3 records rated by two or more annotators disagree." in page
    assert page.index("## 1. Record t1: scores 6 points apart") < page.index("## 2. Record t2.abcd1234: scores 4")
    assert "Record t3" not in page, "scores one point apart are no disagreement"
    assert "| annotator | Response 1 | Response 2 |\n|---|---|---|\n| ann | 7 | 1 |\n| bob | 1 | 2 |\n" in page
    assert "| spread | 6 | 1 |" in page and "| spread | 3 | 4 |" in page
    assert "> Write `f` | that returns 1. ..." in page, "the instruction's first line, to find the record"
    assert "Task t2.\n" in page and f"> {'x' * 160} ..." in page, "a copy names its task"

    one = disagreements_page(ranked, min_spread=3, limit=1, instructions=instructions, link=None)
    assert "2 of 3 records rated by two or more annotators disagree; the first 1 are listed" in one
    assert "Record t2" not in one and "Open the marked records" not in one
    none = disagreements_page([], min_spread=3, limit=20, instructions={}, link=link)
    assert "0 of 0 records rated by two or more annotators disagree." in none and "## 1." not in none


def test_analyze_writes_the_page_beside_the_report(tmp_path: Path) -> None:
    ids = ["t1", "t2"]
    table = annotations(*(annotation_rows(t, a, s) for t in ids for a, s in (("ann", [7, 0]), ("bob", [1, 0]))))
    generations = generations_for(ids, MODELS)
    result = analyze(annotations=table, generations=generations, compare=MODELS, params=AnalyzeParams(bootstrap=100))
    tasks = TASKS.validate(
        pa.table({"task_id": ids, "instruction": ["Do one.", "Do two."], "source": ["s"] * 2, "source_row": [0, 1]}),
        "tasks",
    )
    ranked = rank_disagreements(ratings_from_annotations(table))
    page = disagreements_page(ranked, min_spread=3, limit=20, instructions={"t1": "Do one."}, link=None)
    write_reports(
        result, tmp_path, tasks=tasks, generations=generations, lowest=1, how_to_annotate="-", disagreements=page
    )
    assert (tmp_path / "disagreements.md").read_text() == page
    assert "[disagreements.md](disagreements.md)" in (tmp_path / "report.md").read_text()
    write_reports(result, tmp_path, tasks=tasks, generations=generations, lowest=1, how_to_annotate="-")
    assert (
        not (tmp_path / "disagreements.md").exists() and "disagreements.md" not in (tmp_path / "report.md").read_text()
    )


def server_record(record_id: str, metadata: dict, *responses: tuple[str, str, list[int] | None]) -> ServerRecord:
    return ServerRecord(
        uuid=f"uuid-{record_id}",
        record_id=record_id,
        fields={"instruction": "Do it."},
        metadata=metadata,
        suggestions=frozenset(),
        responses=tuple(
            {
                "user_id": user,
                "status": status,
                "values": None
                if scores is None
                else {f"score_response_{p}": {"value": s} for p, s in enumerate(scores, 1)},
                "updated_at": "2026-01-01T00:00:00",
            }
            for user, status, scores in responses
        ),
    )


def test_push_marks_the_records_the_page_lists_and_only_changes_the_ones_that_differ() -> None:
    records = [
        server_record("t1", {"source": "s"}, ("u1", "submitted", [7, 1]), ("u2", "submitted", [2, 1])),
        server_record(
            "t2", {"source": "s", "needs_review": "yes"}, ("u1", "submitted", [4, 4]), ("u2", "submitted", [4, 5])
        ),
        server_record(
            "t3", {"source": "s", "needs_review": "yes"}, ("u1", "submitted", [0, 7]), ("u2", "submitted", [7, 0])
        ),
        server_record(
            "t4", {"source": "s"}, ("u1", "submitted", [7, 7]), ("u2", "draft", [0, 0]), ("u3", "discarded", None)
        ),
        # a score that is no number is no score: nothing to compare with
        server_record("t5", {"source": "s"}, ("u1", "submitted", [7, 7]), ("u2", "submitted", [7, "1"])),
    ]
    ratings = ratings_on_server(records, asked=Asked(responses=2, scale=range(0, 8)), usernames={"u1": "ann"})
    assert {(r.record_id, r.annotator) for r in ratings} == {
        ("t1", "ann"),
        ("t1", "u2"),
        ("t2", "ann"),
        ("t2", "u2"),
        ("t3", "ann"),
        ("t3", "u2"),
        ("t4", "ann"),
        ("t5", "ann"),
        ("t5", "u2"),
    }
    assert next(r.scores for r in ratings if (r.record_id, r.annotator) == ("t5", "u2")) == (7, None)
    marks = ReviewMarks(frozenset(d.record_id for d in disagreeing(rank_disagreements(ratings), min_spread=3)))
    assert marks.wanted == {"t1", "t3"}
    changed = marks.changed(records, logged={"t3"})
    assert [(r.record_id, r.metadata) for r in changed] == [
        ("t1", {"source": "s", "needs_review": "yes"}),
        ("t2", {"source": "s"}),  # they agree now: the mark comes off
    ]
    built = AnnotationRecord("t3", "t3", tuple(MODELS), {"instruction": "Do it."}, {"source": "s"})
    assert marks.marked(built).metadata == {"source": "s", "needs_review": "yes"}
    assert marks.marked(AnnotationRecord("t9", "t9", tuple(MODELS), {}, {"needs_review": "yes"})).metadata == {}
    assert without_mark(records[1].metadata) == {"source": "s"}
    assert marks.on_server(records[2]) == records[2]


def test_exclude_annotators_leaves_them_out_of_the_marks_too() -> None:
    class Users:
        def get(self, path: str):
            assert path == "/api/v1/users"
            return self

        def raise_for_status(self) -> None:
            pass

        def json(self) -> dict:
            return {"items": [{"id": "u1", "username": "ann"}, {"id": "u2", "username": "bob"}]}

    class Client:
        http_client = Users()

    records = [server_record("t1", {}, ("u1", "submitted", [7, 1]), ("u2", "submitted", [1, 1]))]
    params = Params.model_validate(
        {
            "models": {"m": {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}},
            "compare": ["m"],
            "analyze": {"exclude_annotators": []},
        }
    )
    assert ReviewMarks.read(Client(), records, params=params, responses=2).wanted == {"t1"}
    excluding = params.model_copy(update={"analyze": AnalyzeParams(exclude_annotators=["bob"])})
    assert ReviewMarks.read(Client(), records, params=excluding, responses=2).wanted == set()
    wider = params.model_copy(update={"analyze": AnalyzeParams(disagreement_spread=7)})
    assert ReviewMarks.read(Client(), records, params=wider, responses=2).wanted == set()


def test_the_push_line_counts_the_marked_records() -> None:
    receipt = Receipt(
        url="http://127.0.0.1:6900",
        workspace="w",
        dataset="d",
        dataset_id="i",
        models=["m"],
        records=3,
        settings_hash="s",
        content_hash="c",
    )
    pushed = Pushed(receipt, 0, 1, 2, 0, 0, 0, (), 0, 0, review=2)
    assert pushed.line(output=Path("p")) == (
        "3 records in w/d at http://127.0.0.1:6900 (0 new; 1 updated; 2 unchanged; "
        "2 marked needs_review: their annotators disagree) -> p"
    )


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_the_limit_is_a_count(value: object) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AnalyzeParams(disagreements=value)
    assert json.loads(AnalyzeParams().model_dump_json())["disagreement_spread"] == 3
