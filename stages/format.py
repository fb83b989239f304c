"""DVC stage `format`: tasks x compared models -> chat messages and templated prompts."""

import os

# Only tokenizers are needed here: transformers' advice that PyTorch is missing would just be noise.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from llm_feedback.artifacts import PROMPTS, TASKS, read_table, write_table
from llm_feedback.params import Params, load_params
from llm_feedback.prompts import build_prompts
from llm_feedback.stage import run_stage


def main(*, params: Params | None = None) -> str:
    """`params`: another study's (the evaluate stage's); by default params.yaml's."""
    params = params or load_params()
    tasks = read_table(params.paths.tasks, TASKS)
    formatted = build_prompts(tasks, models=params.models, compare=params.compare, params=params.format)
    write_table(formatted.prompts, params.paths.prompts, PROMPTS)
    return formatted.line(output=params.paths.prompts)


if __name__ == "__main__":
    run_stage("format", main)
