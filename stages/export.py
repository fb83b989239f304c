"""DVC stage `export`: analyze's scores and the annotators' corrections -> SFT and DPO datasets in TRL's formats
under data/export/ (optionally the Hub)."""

from llm_feedback.annotation.values import rating_scale
from llm_feedback.artifacts import ANNOTATIONS, GENERATIONS, SCORES, TASKS, read_table
from llm_feedback.export import build_exports, push_to_hub, write_exports
from llm_feedback.params import load_params
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    paths = params.paths
    exported = build_exports(
        scores=read_table(paths.scores, SCORES),
        annotations=read_table(paths.annotations, ANNOTATIONS),
        generations=read_table(paths.generations, GENERATIONS),
        tasks=read_table(paths.tasks, TASKS),
        compare=params.compare,
        params=params.export,
        scale=rating_scale(params.rubric),
    )
    write_exports(exported, paths.export)
    line = f"{exported.line()} -> {paths.export}"
    if params.export.push_to_hub:
        line += f"; pushed to {push_to_hub(paths.export, params.export.push_to_hub, private=params.export.private)}"
    return line


if __name__ == "__main__":
    run_stage("export", main)
