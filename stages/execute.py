"""DVC stage `execute` (optional): each answer's code run with its task's tests in a sandbox -> data/executions.parquet.

When execute.enabled is false it writes an empty artifact, so the stages after it need no conditional wiring."""

from llm_feedback.artifacts import EXECUTIONS, GENERATIONS, TASKS, read_previous, read_table, write_table
from llm_feedback.execution import execute, task_tests
from llm_feedback.params import load_params
from llm_feedback.sandbox import Sandbox
from llm_feedback.stage import run_stage


def main() -> str:
    params = load_params()
    paths, settings = params.paths, params.execute
    if not settings.enabled:
        write_table(EXECUTIONS.schema.empty_table(), paths.executions, EXECUTIONS)
        return f"disabled (execute.enabled: false) -> {paths.executions} (0 rows)"
    tasks = read_table(paths.tasks, TASKS)
    previous = read_previous(paths.executions, EXECUTIONS)
    tests = task_tests(
        tasks, tests_column=settings.tests_column, reference_column=settings.reference_column, where=str(paths.tasks)
    )
    result = execute(
        tasks=tasks,
        generations=read_table(paths.generations, GENERATIONS),
        compare=params.compare,
        tests=tests,
        sandbox=Sandbox(settings),
        previous=previous,
    )
    write_table(result.table, paths.executions, EXECUTIONS)
    for summary in result.summaries:
        print(f"execute: {summary.line()}", flush=True)
    return result.line(output=paths.executions)


if __name__ == "__main__":
    run_stage("execute", main)
