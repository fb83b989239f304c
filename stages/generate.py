"""DVC stage `generate`: prompts -> one answer per (task, model), resumable, paying for each request once."""

from functools import partial

from llm_feedback.artifacts import GENERATIONS, PROMPTS, read_previous, read_table, write_table
from llm_feedback.generation import generate
from llm_feedback.llm.factory import backend_for
from llm_feedback.params import Params, load_params
from llm_feedback.stage import run_stage


def main(*, params: Params | None = None) -> str:
    """`params`: another study's (the evaluate stage's); by default params.yaml's."""
    params = params or load_params()
    result = generate(
        prompts=read_table(params.paths.prompts, PROMPTS),
        params=params,
        previous=read_previous(params.paths.generations, GENERATIONS),
        make_backend=partial(backend_for, run=params.generate),
    )
    write_table(result.table, params.paths.generations, GENERATIONS)
    for summary in result.summaries:
        print(f"generate: {summary.line()}", flush=True)
    for summary in result.summaries:
        summary.check_error_budget(params.generate.max_error_rate)
    return result.line(output=params.paths.generations)


if __name__ == "__main__":
    run_stage("generate", main)
