"""DVC stage `push`: tasks and generations -> the annotation dataset in Argilla, and a receipt of what is there.
With LLM_FEEDBACK_ANNOTATION_OFFLINE=1, no server: the receipt stays as `dvc pull` brought it."""

from pathlib import Path

from llm_feedback.annotation.connection import OFFLINE, kept_offline, offline
from llm_feedback.annotation.push import push
from llm_feedback.annotation.receipt import Receipt, read_receipt
from llm_feedback.artifacts import (
    EXECUTIONS,
    GENERATIONS,
    JUDGE_PAIRWISE,
    JUDGMENTS,
    TASKS,
    read_optional,
    read_table,
)
from llm_feedback.errors import InputError
from llm_feedback.params import Params, load_params
from llm_feedback.stage import run_stage


def main(*, params: Params | None = None) -> str:
    """`params`: another study's (the evaluate stage's); by default params.yaml's."""
    params = params or load_params()
    paths = params.paths
    if offline():
        return _kept(paths.push_receipt)
    tasks = read_table(paths.tasks, TASKS)
    generations = read_table(paths.generations, GENERATIONS)
    pushed = push(
        params,
        tasks=tasks,
        generations=generations,
        previous=_previous(paths.push_receipt),
        judgments=read_optional(paths.judgments, JUDGMENTS),
        executions=read_optional(paths.executions, EXECUTIONS),
        judge_pairwise=read_optional(paths.judge_pairwise, JUDGE_PAIRWISE),
    )
    pushed.receipt.write(paths.push_receipt)
    return pushed.line(output=paths.push_receipt)


def _kept(path: Path) -> str:
    """Offline: the receipt stays as it is, checked and described, never rewritten; nothing is published."""
    receipt = read_receipt(kept_offline(path))
    return (
        f"annotation server not contacted ({OFFLINE}): kept {path} as it is ({receipt.records} records in "
        f"{receipt.workspace}/{receipt.dataset} at {receipt.url}; nothing published)"
    )


def _previous(path) -> Receipt | None:
    """The last receipt keeps the display order of records already on the server and the rounds drawn so far (it is
    a persistent output)."""
    try:
        return read_receipt(path) if path.exists() else None
    except InputError:
        return None


if __name__ == "__main__":
    run_stage("push", main)
