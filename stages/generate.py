"""DVC stage `generate`: prompts -> one answer per (task, model), resumable, paying for each request once."""

from functools import partial

from llm_feedback.artifacts import GENERATIONS, PROMPTS, read_table, write_table
from llm_feedback.errors import InputError, PipelineError
from llm_feedback.generation import generate
from llm_feedback.llm.factory import backend_for
from llm_feedback.params import load_params
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    prompts = read_table(params.paths.prompts, PROMPTS)
    try:
        previous = read_table(params.paths.generations, GENERATIONS) if params.paths.generations.exists() else None
    except InputError:
        previous = None  # an artifact from an older version is only a cache; the request cache still applies
    table, summaries = generate(
        prompts, params, params.paths.generation_cache, previous, partial(backend_for, run=params.generate)
    )
    write_table(table, params.paths.generations, GENERATIONS)
    for summary in summaries:
        print(f"generate: {summary.line()}", flush=True)
    limit = params.generate.max_error_rate
    for summary in summaries:
        if summary.error_rate > limit:
            raise PipelineError(
                f"{summary.model}: {summary.failed} of {summary.total} requests failed "
                f"({summary.error_rate:.0%} > generate.max_error_rate {limit:.0%}; rerun to retry them); "
                f"first error: {summary.first_error}"
            )
    return f"{table.num_rows} generations -> {params.paths.generations}"


if __name__ == "__main__":
    run_stage("generate", main)
