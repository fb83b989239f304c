"""DVC stage `execute` (optional): each answer's code run with its task's tests in a sandbox -> data/executions.parquet.

When execute.enabled is false it writes an empty artifact, so the stages after it need no conditional wiring."""

from llm_feedback.artifacts import EXECUTIONS, GENERATIONS, TASKS, read_previous, read_table, write_table
from llm_feedback.execution import execute, task_tests
from llm_feedback.params import load_params
from llm_feedback.sandbox import Limits, Sandbox
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    paths, settings = params.paths, params.execute
    if not settings.enabled:
        write_table(EXECUTIONS.schema.empty_table(), paths.executions, EXECUTIONS)
        return f"disabled (execute.enabled: false) -> {paths.executions} (0 rows)"
    tasks = read_table(paths.tasks, TASKS)
    previous = read_previous(paths.executions, EXECUTIONS)
    limits = Limits(settings.cpu_s, settings.wall_s, settings.memory_mb, settings.file_mb, settings.processes)
    sandbox = Sandbox(limits, settings.workers, settings.python)
    table, summaries, isolated = execute(
        tasks, read_table(paths.generations, GENERATIONS), params.compare,
        task_tests(tasks, settings.tests_column, settings.reference_column, str(paths.tasks)), sandbox, previous,
    )
    write_table(table, paths.executions, EXECUTIONS)
    for summary in summaries:
        print(f"execute: {summary.line()}", flush=True)
    network = {True: "own network namespace", False: "no network namespace (audit hook only)", None: "nothing ran"}
    return f"{table.num_rows} runs on {sandbox.workers} workers, {network[isolated]} -> {paths.executions}"


if __name__ == "__main__":
    run_stage("execute", main)
