"""The backend for a model spec; each backend's heavy imports (torch, openai, huggingface_hub) load only if used."""

from __future__ import annotations

from llm_feedback.llm.base import Backend
from llm_feedback.params import GenerateParams, ModelSpec


def backend_for(name: str, spec: ModelSpec, run: GenerateParams) -> Backend:
    if spec.backend == "openai":
        from llm_feedback.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(spec, run.timeout_s)
    if spec.backend == "hf":
        from llm_feedback.llm.hf_backend import HFBackend

        return HFBackend(spec, run.timeout_s)
    from llm_feedback.llm.transformers_backend import TransformersBackend

    return TransformersBackend(name, spec, run.batch_size)
