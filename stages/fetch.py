"""DVC stage `fetch`: the configured task source -> the tasks artifact."""

from dataclasses import replace

from llm_feedback.artifacts import TASKS, write_table
from llm_feedback.params import load_params
from llm_feedback.sources import fetch_tasks
from llm_feedback.splits import held_out
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    fetched, note = fetch_tasks(params.fetch), ""
    if params.fetch.held_out:  # a tuned model is compared only on tasks it was not trained on
        kept = held_out(fetched.table, seed=params.export.seed, fraction=params.export.test_fraction)
        fetched, note = replace(fetched, table=kept.table), f"; {kept.line()}"
    write_table(fetched.table, params.paths.tasks, TASKS)
    return fetched.line(output=params.paths.tasks) + note


if __name__ == "__main__":
    run_stage("fetch", main)
