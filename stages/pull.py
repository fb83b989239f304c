"""DVC stage `pull` (always runs): every annotation on the server -> data/annotations.parquet, models un-blinded.
With LLM_FEEDBACK_ANNOTATION_OFFLINE=1, no server: the annotations stay as `dvc pull` brought them."""

from llm_feedback.annotation.connection import offline
from llm_feedback.annotation.pull import kept, pull
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.artifacts import ANNOTATIONS, write_table
from llm_feedback.params import Params, load_params
from llm_feedback.stage import run_stage


def main(*, params: Params | None = None) -> str:
    """`params`: another study's (the evaluate stage's); by default params.yaml's."""
    params = params or load_params()
    if offline():
        return kept(params.paths.annotations)
    pulled = pull(params, receipt=read_receipt(params.paths.push_receipt))
    write_table(pulled.table, params.paths.annotations, ANNOTATIONS)
    return pulled.line(output=params.paths.annotations)


if __name__ == "__main__":
    run_stage("pull", main)
