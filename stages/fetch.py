"""DVC stage `fetch`: the configured task source -> the tasks artifact."""

from llm_feedback.artifacts import TASKS, write_table
from llm_feedback.params import load_params
from llm_feedback.sources import fetch_tasks
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    table, stats = fetch_tasks(params.fetch)
    write_table(table, params.paths.tasks, TASKS)
    return (
        f"{stats.tasks} tasks -> {params.paths.tasks} ({stats.rows_read} rows read from {params.fetch.source}; "
        f"dropped {stats.empty_dropped} empty and {stats.duplicates_dropped} duplicate instructions)"
    )


if __name__ == "__main__":
    run_stage("fetch", main)
