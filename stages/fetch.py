"""DVC stage `fetch`: the configured task source -> the tasks artifact."""

import pyarrow as pa

from llm_feedback.artifacts import TASKS, write_table
from llm_feedback.params import load_params
from llm_feedback.sources import fetch_tasks
from llm_feedback.splits import HeldOut, held_out
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    kept: list[HeldOut] = []

    def test_split_only(tasks: pa.Table) -> pa.Table:
        """A tuned model is compared only on tasks it was not trained on."""
        kept.append(held_out(tasks, seed=params.export.seed, fraction=params.export.test_fraction))
        return kept[-1].table

    fetched = fetch_tasks(params.fetch, select=test_split_only if params.fetch.held_out else None)
    write_table(fetched.table, params.paths.tasks, TASKS)
    note = f"; {kept[0].line()}" + (f", then limit {params.fetch.limit}" if params.fetch.limit else "") if kept else ""
    return fetched.line(output=params.paths.tasks) + note


if __name__ == "__main__":
    run_stage("fetch", main)
