"""DVC stage `analyze`: annotations -> metrics.json (dvc metrics), plots/ (dvc plots), reports/ (Markdown + PNG)."""

from llm_feedback.analysis import analyze
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.artifacts import (
    ANNOTATIONS, EXECUTIONS, GENERATIONS, JUDGE_PAIRWISE, JUDGMENTS, TASKS, read_optional, read_table,
)
from llm_feedback.params import load_params
from llm_feedback.report import write_metrics, write_plot_data, write_reports
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    paths = params.paths
    receipt = read_receipt(paths.push_receipt)
    generations = read_table(paths.generations, GENERATIONS)
    result = analyze(
        read_table(paths.annotations, ANNOTATIONS), generations, params.compare, params.analyze, receipt.records,
        read_optional(paths.judgments, JUDGMENTS), read_optional(paths.executions, EXECUTIONS),
        read_optional(paths.judge_pairwise, JUDGE_PAIRWISE),
    )
    how_to_annotate = (
        f"Create logins with `.venv/bin/llm-feedback annotators add NAME...`, send annotators to {receipt.url} "
        f"(dataset {receipt.workspace}/{receipt.dataset}), then run `dvc repro` to bring their work back."
    )
    write_reports(result, read_table(paths.tasks, TASKS), generations, paths.reports, params.analyze.lowest, how_to_annotate)
    write_plot_data(result, paths.plots)
    write_metrics(result.metrics, paths.metrics)
    ranking = ", ".join(f"{m} {v['mean']:.2f}" for m, v in result.ranking())
    counts = result.metrics["counts"]
    left_out = result.left_out.line()
    return (f"{counts['scored_tasks']} of {counts['tasks']} tasks scored; mean score: {ranking or 'none yet'}"
            f"{'; ' + left_out if left_out else ''} -> {paths.metrics}, {paths.reports}/report.md")


if __name__ == "__main__":
    run_stage("analyze", main)
