"""DVC stage `judge` (optional): an LLM scores every answer with the annotators' rubric -> data/judgments.parquet
(+ data/judge_pairwise.parquet in pairwise mode). Switched off, it writes empty artifacts."""

from functools import partial

from llm_feedback.artifacts import GENERATIONS, JUDGE_PAIRWISE, JUDGMENTS, TASKS, read_previous, read_table, write_table
from llm_feedback.judge import run_judge
from llm_feedback.llm.factory import backend_for
from llm_feedback.params import load_params
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    paths, settings = params.paths, params.judge
    if not settings.enabled:
        write_table(JUDGMENTS.schema.empty_table(), paths.judgments, JUDGMENTS)
        write_table(JUDGE_PAIRWISE.schema.empty_table(), paths.judge_pairwise, JUDGE_PAIRWISE)
        return f"disabled (judge.enabled: false) -> {paths.judgments} (0 rows)"
    result = run_judge(
        tasks=read_table(paths.tasks, TASKS),
        generations=read_table(paths.generations, GENERATIONS),
        params=params,
        make_backend=partial(backend_for, run=params.generate),
        previous=read_previous(paths.judgments, JUDGMENTS),
    )
    write_table(result.judgments, paths.judgments, JUDGMENTS)
    write_table(result.pairwise, paths.judge_pairwise, JUDGE_PAIRWISE)
    for summary in result.summaries:
        print(f"judge: requests: {summary.line()}", flush=True)
        summary.check_error_budget(params.generate.max_error_rate)
    return result.line(output=paths.judgments)


if __name__ == "__main__":
    run_stage("judge", main)
