"""DVC stage `fetch`: the configured task source -> the tasks artifact."""

from llm_feedback.artifacts import TASKS, write_table
from llm_feedback.params import load_params
from llm_feedback.sources import fetch_tasks
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    fetched = fetch_tasks(params.fetch)
    write_table(fetched.table, params.paths.tasks, TASKS)
    return fetched.line(output=params.paths.tasks)


if __name__ == "__main__":
    run_stage("fetch", main)
