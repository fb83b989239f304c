"""What every `python -m stages.X` shares: one summary line on success, one error line and an exit code on failure."""

from __future__ import annotations

import sys
from collections.abc import Callable

from llm_feedback.errors import PipelineError
from llm_feedback.secrets import scrub


def run_stage(name: str, main: Callable[[], str]) -> None:
    """Run a stage body that returns its summary; a PipelineError becomes `name: error: ...` on stderr."""
    try:
        summary = main()
    except PipelineError as e:
        print(f"{name}: error: {scrub(str(e))}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    print(f"{name}: {summary}")
