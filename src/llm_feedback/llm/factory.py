"""The backend for a model spec; each backend's heavy imports (torch, openai, huggingface_hub) load only if used."""

from __future__ import annotations

import os

from llm_feedback.errors import ConfigError
from llm_feedback.llm.base import Backend
from llm_feedback.params import GenerateParams, ModelSpec
from llm_feedback.secrets import register_secret

# Where each backend's key comes from when a model names no api_key_env (an unset one means: no key).
DEFAULT_KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "hf": "HF_TOKEN", "transformers": "HF_TOKEN"}


def backend_for(name: str, spec: ModelSpec, run: GenerateParams) -> Backend:
    """Called before the model's first request, so a missing key stops the run before anything is sent."""
    key = api_key(name, spec)
    if spec.backend == "openai":
        from llm_feedback.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(
            spec, run.timeout_s, api_key=key, rest_s=run.backoff_initial_s, rest_max_s=run.backoff_max_s
        )
    if spec.backend == "hf":
        from llm_feedback.llm.hf_backend import HFBackend

        return HFBackend(spec, run.timeout_s, token=key)
    from llm_feedback.llm.transformers_backend import TransformersBackend

    return TransformersBackend(name, spec, run.batch_size, token=key)


def api_key(name: str, spec: ModelSpec) -> str | None:
    """The model's key from the environment, registered with the scrubber. A variable the model names in
    api_key_env must be set: requests without the key the user meant would fail later with no hint why."""
    variable = spec.api_key_env or DEFAULT_KEY_VARIABLES[spec.backend]
    key = os.environ.get(variable) or None
    if key is None and spec.api_key_env:
        raise ConfigError(
            f"params.yaml: models.{name}.api_key_env: {variable} is not set "
            "(export it, or remove api_key_env if the server needs no key)"
        )
    register_secret(key)
    return key
