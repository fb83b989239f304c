"""DVC stage `evaluate` (runs when train is on): the tuned model against its base on export's test-split tasks, through
the main run's own format, generate, push, pull and analyze, with outputs of their own: data/evaluation/ and
evaluation/metrics.json, which `dvc exp show` and `dvc metrics diff` compare between experiments. Like pull, it always
runs: the ratings it waits for arrive on the annotation server, where DVC cannot see them."""

import shutil

from llm_feedback.artifacts import TASKS, read_table, write_table
from llm_feedback.evaluation import evaluation_study, evaluation_tasks
from llm_feedback.params import Params, load_params
from llm_feedback.report import write_metrics
from llm_feedback.stage import run_stage
from stages import analyze, generate, pull, push
from stages import format as format_prompts

STEPS = {"format": format_prompts.main, "generate": generate.main, "push": push.main, "pull": pull.main}


def main() -> str:
    params = load_params()
    if not params.train.enabled:
        return _off(params)
    study = evaluation_study(params)
    tasks = evaluation_tasks(read_table(params.paths.tasks, TASKS), params)
    write_table(tasks, study.params.paths.tasks, TASKS)
    print(f"evaluate: {study.tuned} ({study.record.method}) against {params.train.base} on {tasks.num_rows} tasks of "
          f"export's test split", flush=True)  # fmt: skip
    for step, run in STEPS.items():
        print(f"evaluate: {step}: {run(params=study.params)}", flush=True)
    return analyze.main(params=study.params)


def _off(params: Params) -> str:
    """DVC expects the outputs: empty folders, and metrics that say why there is no verdict."""
    paths = params.paths
    for folder in (paths.evaluation_data, paths.evaluation):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    write_metrics({"evaluated": False, "reason": "train.enabled is false"}, paths.evaluation / "metrics.json")
    for folder in ("plots", "reports"):
        (paths.evaluation / folder).mkdir()
    return f"off (train.enabled is false) -> {paths.evaluation / 'metrics.json'}"


if __name__ == "__main__":
    run_stage("evaluate", main)
