"""DVC stage `analyze`: annotations -> the per-task scores export builds on (data/scores.parquet), metrics.json
(dvc metrics), plots/ (dvc plots), reports/ (Markdown + PNG)."""

from llm_feedback.analysis import analyze, complete_cases, json_safe
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.annotation.values import rating_scale
from llm_feedback.artifacts import (
    ANNOTATIONS,
    EXECUTIONS,
    GENERATIONS,
    JUDGE_PAIRWISE,
    JUDGMENTS,
    SCORES,
    TASKS,
    read_optional,
    read_table,
    write_table,
)
from llm_feedback.disagreements import find_disagreements
from llm_feedback.leakage import refuse_trained_tasks
from llm_feedback.params import Params, load_params
from llm_feedback.plot_data import write_plot_data
from llm_feedback.report import write_metrics, write_reports
from llm_feedback.stage import run_stage
from llm_feedback.stopping import rounds_summary, stopping_on


def main(*, params: Params | None = None) -> str:
    """`params`: another study's (the evaluate stage's); by default params.yaml's."""
    params = params or load_params()
    paths = params.paths
    receipt = read_receipt(paths.push_receipt)
    generations = read_table(paths.generations, GENERATIONS)
    refuse_trained_tasks(compare=params.compare, models=params.models, generations=generations)
    judgments = read_optional(paths.judgments, JUDGMENTS)
    annotations = read_table(paths.annotations, ANNOTATIONS)
    result = analyze(
        annotations=annotations,
        generations=generations,
        compare=params.compare,
        params=params.analyze,
        records=receipt.records,
        judgments=judgments,
        executions=read_optional(paths.executions, EXECUTIONS),
        judge_pairwise=read_optional(paths.judge_pairwise, JUDGE_PAIRWISE),
        chances=receipt.chances(),
        scale=rating_scale(params.rubric),
    )
    metrics, line = result.metrics, result.line()
    if receipt.rounds:  # a look after every round: the same anytime-valid decision push stops the rounds on
        stop = stopping_on(
            complete_cases(result.scores, params.compare),
            compare=params.compare,
            confidence=params.analyze.confidence,
            receipt=receipt,
            judgments=judgments,
        )
        rounds, decision = rounds_summary(stop, receipt)
        metrics, line = {**metrics, "rounds": rounds}, f"{decision}; {line}"
    how_to_annotate = (
        f"Create logins with `.venv/bin/llm-feedback annotators add NAME...`, send annotators to {receipt.url} "
        f"(dataset {receipt.workspace}/{receipt.dataset}), then run `dvc repro` to bring their work back."
    )
    tasks = read_table(paths.tasks, TASKS)
    # the records whose annotators disagree most, blind, for adjudication; push marks the same ones needs_review
    found = find_disagreements(
        annotations, params=params.analyze, tasks=tasks, url=receipt.url, dataset_id=receipt.dataset_id
    )
    if found.metrics is not None:
        metrics = {**metrics, "disagreements": found.metrics}
    if found.line():
        line = f"{line}; {found.line()}"
    write_table(result.scores_table(), paths.scores, SCORES)
    write_reports(
        result,
        paths.reports,
        tasks=tasks,
        generations=generations,
        lowest=params.analyze.lowest,
        how_to_annotate=how_to_annotate,
        disagreements=found.page,
    )
    write_plot_data(result, paths.plots)
    write_metrics(json_safe(metrics), paths.metrics)
    return f"{line} -> {paths.scores}, {paths.metrics}, {paths.reports}/report.md"


if __name__ == "__main__":
    run_stage("analyze", main)
