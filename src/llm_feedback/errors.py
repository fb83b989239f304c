"""Errors a user can act on: each carries one line that names the key, file, row or column at fault."""


class PipelineError(Exception):
    """Bad input or environment; printed as one line, never as a traceback."""

    exit_code = 1


class ConfigError(PipelineError):
    """params.yaml (or a setting it points to) is wrong; exit code 2 like a usage error."""

    exit_code = 2


class InputError(PipelineError):
    """A data file or dataset the pipeline reads is unusable."""
