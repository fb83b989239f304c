"""Typed view of params.yaml, so a typo fails at once with the key's name instead of deep inside a stage."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm_feedback.errors import ConfigError

DEFAULT_PARAMS_FILE = Path("params.yaml")

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Strict(BaseModel):
    """Rejects unknown keys: a misspelt knob must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Strict):
    tasks: Path = Path("data/tasks.parquet")
    prompts: Path = Path("data/prompts.parquet")
    generations: Path = Path("data/generations.parquet")
    generation_cache: Path = Path("data/cache/generations.sqlite")
    judgments: Path = Path("data/judgments.parquet")
    executions: Path = Path("data/executions.parquet")
    push_receipt: Path = Path("data/push.json")
    annotations: Path = Path("data/annotations.parquet")
    judge_pairwise: Path = Path("data/judge_pairwise.parquet")
    judge_cache: Path = Path("data/cache/judgments.sqlite")
    metrics: Path = Path("metrics.json")
    plots: Path = Path("plots")
    reports: Path = Path("reports")
    export: Path = Path("data/export")


class FetchParams(Strict):
    source: Literal["sample", "file", "hub"] = "sample"
    path: Path = Path("data/sample/tasks.yaml")
    dataset: str = "bigcode/self-oss-instruct-sc2-exec-filter-50k"
    split: str = "train[:20]"
    revision: str | None = None
    instruction_column: str = "instruction"
    keep_columns: list[str] = Field(default_factory=list)
    shuffle: bool = False
    seed: int = 42
    limit: int | None = Field(default=None, ge=1)


class FormatParams(Strict):
    system_prompt: str | None = None


class GenerationParams(Strict):
    """Sampling settings that mean the same thing on every backend."""

    max_new_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)  # 0 = greedy
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = 0
    stop: list[str] = Field(default_factory=list)


class GenerationOverrides(Strict):
    """A model's own values for some generation settings; unset ones come from `generation:`."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | None = None


class GenerateParams(Strict):
    concurrency: int = Field(default=8, ge=1, le=1024)
    requests_per_minute: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    max_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    batch_size: int = Field(default=8, ge=1)
    progress_every_s: float = Field(default=30.0, gt=0)


class ModelSpec(Strict):
    """One model, declared once; `compare` refers to it by name."""

    backend: Literal["hf", "openai", "transformers"]
    model: str | None = None
    tokenizer: str | None = None
    system_prompt: str | None = None
    provider: str | None = None
    endpoint_url: str | None = None
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    device: str | None = None
    generation: GenerationOverrides = Field(default_factory=GenerationOverrides)
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    requests_per_minute: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _backend_fields(self) -> ModelSpec:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://localhost:8000/v1)")
        if self.backend == "hf" and self.provider and self.endpoint_url:
            raise ValueError("set either provider (Inference Providers) or endpoint_url (a dedicated endpoint), not both")
        if self.backend != "hf" and (self.provider or self.endpoint_url):
            raise ValueError("provider and endpoint_url are for backend 'hf'")
        if self.backend != "openai" and self.base_url:
            raise ValueError("base_url is for backend 'openai'")
        if self.backend != "transformers" and self.device:
            raise ValueError("device is for backend 'transformers'")
        if self.model is None and not (self.backend == "hf" and self.endpoint_url):
            raise ValueError("model is required")
        if self.needs_prompt and not (self.tokenizer or self.model):
            raise ValueError("a dedicated endpoint needs tokenizer (hub id or folder) to render its chat template")
        return self

    @property
    def needs_prompt(self) -> bool:
        """Backends that take raw text, so the format stage renders the model's own chat template."""
        return self.backend == "transformers" or (self.backend == "hf" and self.endpoint_url is not None)

    def generation_params(self, defaults: GenerationParams) -> GenerationParams:
        return defaults.model_copy(update=self.generation.model_dump(exclude_unset=True))


class ArgillaParams(Strict):
    """Where annotation happens: `local` is the embedded server; anything else is a hosted Argilla's URL."""

    url: str = "local"
    data_dir: Path = Path(".argilla")
    port: int = Field(default=6900, ge=1, le=65535)
    timeout_s: float = Field(default=60.0, gt=0)
    # HF_TOKEN as `Authorization: Bearer` (a private Hugging Face Space): auto = only to *.hf.space hosts
    send_hf_token: Literal["auto", "always", "never"] = "auto"

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if url != "local" and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("must be 'local' (the embedded server) or an http(s) URL such as https://my-argilla.hf.space")
        if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            raise ValueError("must not carry credentials: put the key in ARGILLA_API_KEY")
        return url.rstrip("/")


class AnnotationParams(Strict):
    """The Argilla dataset annotators work in, and how records reach them."""

    workspace: str = Field(default="llm-feedback", min_length=1)
    dataset: str = Field(default="code-answers", min_length=1)
    guidelines: Path = Path("annotation/guidelines.md")
    rating_tooltip: Path = Path("annotation/rating_tooltip.md")
    seed: int = 42
    assignment: Literal["metadata", "overlap"] = "metadata"
    groups: int = Field(default=2, ge=1, le=1000)
    min_submitted: int = Field(default=1, ge=1, le=100)
    on_annotated_change: Literal["fail", "skip", "new_record"] = "fail"
    recreate: bool = False
    force: bool = False
    batch_size: int = Field(default=500, ge=1, le=1000)

    @model_validator(mode="after")
    def _assignment(self) -> AnnotationParams:
        if self.force and not self.recreate:
            raise ValueError("force only applies with recreate: true")
        return self


class AnalyzeParams(Strict):
    """How annotations become scores and how sure we are of them."""

    aggregate: Literal["mean", "median", "majority"] = "mean"
    tie_margin: float = Field(default=0.0, ge=0.0, le=7.0)
    bootstrap: int = Field(default=1000, ge=100, le=100_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = 0
    lowest: int = Field(default=20, ge=0)


class ExportParams(Strict):
    """Which annotated answers become training data."""

    sft_min_score: float = Field(default=6.0, ge=0.0, le=7.0)
    dpo_min_margin: float = Field(default=2.0, gt=0.0, le=7.0)
    test_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = 0
    push_to_hub: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool = True


class JudgeParams(Strict):
    """An LLM judge scoring every answer with the annotators' rubric."""

    enabled: bool = False
    model: str | None = None  # a name under models:, compared or not
    rubric: Path = Path("annotation/rating_tooltip.md")
    json_mode: bool = True  # ask for JSON where the backend can (OpenAI response_format, TGI grammar)
    pairwise: bool = False  # also ask which answer is better, in both orders
    max_new_tokens: int = Field(default=512, ge=16)


class ExecuteParams(Strict):
    """Running each answer's code with its task's tests, in a sandbox."""

    enabled: bool = False
    tests_column: str | None = "tests"  # a task column of asserts (the sample's)
    reference_column: str | None = None  # else: a column holding a reference solution that ends with asserts
    cpu_s: int = Field(default=10, ge=1, le=3600)
    wall_s: float = Field(default=30.0, gt=0, le=3600)
    memory_mb: int = Field(default=1024, ge=64)
    file_mb: int = Field(default=16, ge=1)
    processes: int = Field(default=32, ge=1)
    workers: int | None = Field(default=None, ge=1)  # default and cap: the number of cores
    python: str | None = None  # the interpreter for generated code (default: the pipeline's, if others may read it)


class Params(Strict):
    paths: Paths = Field(default_factory=Paths)
    fetch: FetchParams = Field(default_factory=FetchParams)
    format: FormatParams = Field(default_factory=FormatParams)
    generation: GenerationParams = Field(default_factory=GenerationParams)
    generate: GenerateParams = Field(default_factory=GenerateParams)
    argilla: ArgillaParams = Field(default_factory=ArgillaParams)
    annotation: AnnotationParams = Field(default_factory=AnnotationParams)
    judge: JudgeParams = Field(default_factory=JudgeParams)
    execute: ExecuteParams = Field(default_factory=ExecuteParams)
    analyze: AnalyzeParams = Field(default_factory=AnalyzeParams)
    export: ExportParams = Field(default_factory=ExportParams)
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    compare: list[str] = Field(default_factory=list)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in models:
            if not re.match(MODEL_NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} may use only letters, digits, '.', '_' and '-'")
        return models

    @model_validator(mode="after")
    def _compare_declared(self) -> Params:
        if not self.compare:
            raise ValueError("compare: list at least one model declared under models:")
        for i, name in enumerate(self.compare):
            if name not in self.models:
                declared = ", ".join(self.models) or "none"
                raise ValueError(f"compare[{i}]: {name!r} is not declared under models: (declared: {declared})")
        if len(set(self.compare)) != len(self.compare):
            raise ValueError("compare: lists a model twice")
        if self.judge.enabled and self.judge.model not in self.models:
            declared = ", ".join(self.models) or "none"
            raise ValueError(f"judge.model: {self.judge.model!r} is not declared under models: (declared: {declared})")
        return self


def load_params(path: Path = DEFAULT_PARAMS_FILE) -> Params:
    """Load and validate params.yaml; any problem becomes one ConfigError line naming the key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the project's root)") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_describe(e)}") from None


def _may_hold_secret(key: str) -> bool:
    """A value pasted into a key like api_key_env may be the key itself: never echo it."""
    return any(word in key.lower() for word in ("key", "token", "secret", "password"))


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _describe(error: ValidationError) -> str:
    """All validation problems on one line, each led by its dotted key."""
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (misspelt, or from a newer version?)"
        elif item["type"] not in {"value_error", "missing"} and "input" in item and not _may_hold_secret(key):
            message = f"{message} (got {item['input']!r:.60})"
        parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts)
