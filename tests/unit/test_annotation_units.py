"""The parts of push and pull that need no server: blinding, assignment, settings comparison, receipt, connection."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llm_feedback.annotation.connection import Target, _sends_hf_token, resolve
from llm_feedback.annotation.dataset_settings import DatasetSpec, describe_structure_change
from llm_feedback.annotation.pull import _unblind
from llm_feedback.annotation.receipt import Receipt, read_receipt
from llm_feedback.annotation.records import annotator_group, blind_order, build_records
from llm_feedback.errors import ConfigError, InputError
from llm_feedback.params import AnnotationParams, ArgillaParams, Params
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import make_generations, make_tasks


def spec(responses: int = 2, **params) -> DatasetSpec:
    annotation = AnnotationParams(guidelines=PROJECT_ROOT / "annotation/guidelines.md",
                                  rating_tooltip=PROJECT_ROOT / "annotation/rating_tooltip.md", **params)
    return DatasetSpec.from_params(annotation, responses, with_executions=False)


def test_display_order_is_seeded_per_task_and_balanced() -> None:
    models = ["a", "b"]
    orders = [blind_order(42, f"task-{i}", models) for i in range(2000)]
    assert orders == [blind_order(42, f"task-{i}", models) for i in range(2000)], "stable across calls"
    first = Counter(order[0] for order in orders)
    assert 900 < first["a"] < 1100, f"each model is Response 1 about half the time: {first}"
    assert [blind_order(7, f"task-{i}", models) for i in range(50)] != orders[:50], "the seed matters"
    assert sorted(blind_order(1, "t", ["x", "y", "z"])) == ["x", "y", "z"]


def test_annotator_groups_are_seeded_and_spread() -> None:
    groups = ["group-1", "group-2", "group-3"]
    counts = Counter(annotator_group(42, f"task-{i}", groups) for i in range(3000))
    assert set(counts) == set(groups) and min(counts.values()) > 900
    assert annotator_group(42, "t", groups) == annotator_group(42, "t", groups)


def test_records_keep_known_orders_and_leave_out_unanswered_tasks() -> None:
    tasks = make_tasks(6)
    generations = make_generations(tasks, ["a", "b"])
    ids = tasks.column("task_id").to_pylist()
    response = generations.column("response").to_pylist()
    response[0] = None  # task 0, model a failed
    generations = generations.set_column(2, "response", [response])
    known = {ids[1]: ["b", "a"], ids[2]: ["a", "b"]}
    built = build_records(tasks, generations, ["a", "b"], spec(), seed=3, known_orders=known)
    assert built.missing_answers == 1 and [r.record_id for r in built.records] == ids[1:]
    by_id = {r.record_id: r for r in built.records}
    assert by_id[ids[1]].models == ("b", "a") and "written by b" in by_id[ids[1]].fields["response_1"]
    assert by_id[ids[2]].models == ("a", "b")
    assert all(r.metadata["annotator_group"] in ("group-1", "group-2") for r in built.records)
    overlap = build_records(tasks, generations, ["a", "b"], spec(assignment="overlap"), seed=3)
    assert all("annotator_group" not in r.metadata for r in overlap.records)


def test_structure_changes_are_named() -> None:
    two, three = spec(2).structure(), spec(3).structure()
    assert describe_structure_change(two, three) == (
        "new field response_3, new question score_response_3, question to_correct changed")
    assert spec(2).settings_hash() != spec(2, min_submitted=2).settings_hash()
    assert spec(2).structure() == spec(2, min_submitted=3).structure(), "min_submitted can change in place"


def test_labels_unblind_to_model_names() -> None:
    assert _unblind("response_2", ["x", "y"]) == "y"
    assert _unblind("neither", ["x", "y"]) == "neither" and _unblind(None, ["x"]) is None


def test_a_receipt_round_trips_and_a_broken_one_is_named(tmp_path: Path) -> None:
    receipt = Receipt("http://h", "w", "d", "id", ["a", "b"], 1, "s", "c", {"t": {"task_id": "t", "models": ["b", "a"]}})
    receipt.write(tmp_path / "push.json")
    assert read_receipt(tmp_path / "push.json") == receipt
    (tmp_path / "bad.json").write_text(json.dumps({"version": 1, "url": "x"}))
    with pytest.raises(InputError, match=r"bad.json: not a push receipt"):
        read_receipt(tmp_path / "bad.json")
    with pytest.raises(InputError, match="run the push stage first"):
        read_receipt(tmp_path / "missing.json")


def test_the_hf_token_goes_only_to_spaces_unless_asked() -> None:
    assert _sends_hf_token("https://me-argilla.hf.space", "auto")
    assert not _sends_hf_token("https://argilla.example.com", "auto")
    assert not _sends_hf_token("https://hf.space.evil.example", "auto")
    assert _sends_hf_token("http://127.0.0.1:1", "always") and not _sends_hf_token("https://x.hf.space", "never")


def test_hosted_params_need_a_key_and_a_clean_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="export ARGILLA_API_KEY"):
        resolve(ArgillaParams(url="https://argilla.example.com"))
    monkeypatch.setenv("ARGILLA_API_KEY", "secret-key-value")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    target = resolve(ArgillaParams(url="https://team-argilla.hf.space/"))
    assert target.url == "https://team-argilla.hf.space" and target.headers == {"Authorization": "Bearer hf_secret"}
    assert "secret" not in repr(target) and isinstance(target, Target)
    base = {"models": {"m": {"backend": "openai", "model": "m", "base_url": "http://x/v1"}}, "compare": ["m"]}
    for url, message in (("argilla.example.com", "must be 'local'"), ("https://user:pw@host", "must not carry credentials")):
        with pytest.raises(ValueError, match=message):
            Params.model_validate({**base, "argilla": {"url": url}})
    with pytest.raises(ValueError, match="force only applies with recreate"):
        Params.model_validate({**base, "annotation": {"force": True}})
