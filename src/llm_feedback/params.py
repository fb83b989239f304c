"""Typed view of params.yaml, so a typo fails at once with the key's name instead of deep inside a stage.

Every field's default equals the shipped params.yaml (tests/unit/test_params.py compares every key): the file stays
the documented, commented list of knobs, while Params built in code and a params.yaml that leaves keys out get the
same values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from llm_feedback.errors import ConfigError

DEFAULT_PARAMS_FILE = Path("params.yaml")

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# An environment variable's name as people write them (OPENAI_API_KEY): a pasted key is never upper-case only.
ENV_VAR_PATTERN = re.compile(r"[A-Z_][A-Z0-9_]*")
# What Argilla 2.8's SDK accepts as a workspace name (the server would take more, but push creates it with the SDK).
WORKSPACE_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
DATASET_NAME_MAX = 200  # argilla-server's limit
COMPARISON = "{compare}"  # in annotation.dataset: the compared models' names, so each comparison has its own dataset
# Access tokens as their issuers hand them out: Hugging Face, OpenAI and others (sk-), GitHub, GitLab, Slack, AWS,
# Google. Such a value never belongs in params.yaml (it would reach dvc.lock and DVC's run cache).
TOKEN_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{16,}|sk_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[A-Za-z0-9_-]{30,})"
)
# Random-looking text: 20 or more letters and digits in a row, mixing lower case, upper case and digits.
HIGH_ENTROPY_PATTERN = re.compile(r"(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{20,}")
SECRET_QUERY_WORDS = ("key", "token", "secret", "password", "signature", "sig", "auth")


class Strict(BaseModel):
    """Rejects unknown keys: a misspelt knob must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Numbers and switches are taken as written: `seed: true` is not 1, `limit: 5.0` is not 5, `shuffle: 1` is not true.
Int = StrictInt
Float = StrictFloat
Bool = StrictBool


RATING_TOP = 10  # Argilla's rating questions take values 0 to 10
# paths.* that name a folder
FOLDER_OUTPUTS = ("plots", "reports", "export", "models", "train_checkpoints", "evaluation_data", "evaluation")


class Paths(Strict):
    tasks: Path = Path("data/tasks.parquet")
    prompts: Path = Path("data/prompts.parquet")
    generations: Path = Path("data/generations.parquet")
    generation_cache: Path = Path("data/cache/generations.sqlite")
    judgments: Path = Path("data/judgments.parquet")
    executions: Path = Path("data/executions.parquet")
    push_receipt: Path = Path("data/push.json")
    annotations: Path = Path("data/annotations.parquet")
    scores: Path = Path("data/scores.parquet")
    judge_pairwise: Path = Path("data/judge_pairwise.parquet")
    judge_cache: Path = Path("data/cache/judgments.sqlite")
    metrics: Path = Path("metrics.json")
    plots: Path = Path("plots")
    reports: Path = Path("reports")
    export: Path = Path("data/export")
    models: Path = Path("models")
    train_checkpoints: Path = Path("data/cache/train")
    train_metrics: Path = Path("training/metrics.json")
    train_loss: Path = Path("training/loss.csv")
    evaluation_data: Path = Path("data/evaluation")
    evaluation: Path = Path("evaluation")

    @field_validator("*")
    @classmethod
    def _inside_project(cls, path: Path, info: ValidationInfo) -> Path:
        """Outputs live in the project (DVC refuses others only after the stage wrote them there), and a file where a
        file goes. Checked when the project folder (params.yaml's) is known."""
        root = project_root(info)
        if root is None:
            return path
        full = Path(os.path.normpath(root / path))
        if full == root:
            raise ValueError(f"{path} is the project folder itself; name a file or folder inside it")
        if not full.is_relative_to(root):
            raise ValueError(f"{path} is outside the project folder {root} (outputs live inside it)")
        for parent in reversed(full.relative_to(root).parents[:-1]):
            if (root / parent).exists() and not (root / parent).is_dir():
                raise ValueError(f"{path} cannot be created: {parent} is a file")
        if info.field_name in FOLDER_OUTPUTS:
            if full.exists() and not full.is_dir():
                raise ValueError(f"{path} is a file; name a folder")
        elif full.is_dir():
            raise ValueError(f"{path} is a folder; name a file")
        return path

    def overlap(self) -> str | None:
        """Two outputs in one place (or one inside another's folder) would overwrite each other."""
        seen: dict[str, Path] = {}
        for key in type(self).model_fields:
            mine = Path(os.path.abspath(getattr(self, key)))
            for other, place in seen.items():
                if mine == place or mine.is_relative_to(place) or place.is_relative_to(mine):
                    return (
                        f"paths.{key}: {getattr(self, key)} overlaps paths.{other} ({getattr(self, other)}); "
                        "give each its own place"
                    )
            seen[key] = mine
        return None


def project_root(info: ValidationInfo) -> Path | None:
    """The folder holding params.yaml, when validation knows it (load_params passes it)."""
    root = (info.context or {}).get("root")
    return None if root is None else Path(os.path.abspath(root))


class FetchParams(Strict):
    source: Literal["sample", "file", "hub"] = "sample"
    path: Path = Path("data/sample/tasks.yaml")
    dataset: str = "bigcode/self-oss-instruct-sc2-exec-filter-50k"
    split: str = "train[:20]"
    revision: str | None = None
    instruction_column: str = "instruction"
    keep_columns: list[str] = Field(default_factory=list)
    shuffle: Bool = False
    seed: Int = 42
    limit: Int | None = Field(default=None, ge=1)
    held_out: Bool = False  # only the tasks of export's test split (export.seed, export.test_fraction)


class FormatParams(Strict):
    system_prompt: str | None = None


class GenerationParams(Strict):
    """Sampling settings that mean the same thing on every backend."""

    max_new_tokens: Int = Field(default=1024, ge=1)
    temperature: Float = Field(default=0.0, ge=0.0, le=2.0)  # 0 = greedy
    top_p: Float = Field(default=1.0, gt=0.0, le=1.0)
    seed: Int | None = 0
    stop: list[str] = Field(default_factory=list)


class GenerationOverrides(Strict):
    """A model's own values for some generation settings; unset ones come from `generation:`."""

    max_new_tokens: Int | None = Field(default=None, ge=1)
    temperature: Float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: Float | None = Field(default=None, gt=0.0, le=1.0)
    seed: Int | None = None
    stop: list[str] | None = None


class GenerateParams(Strict):
    concurrency: Int = Field(default=8, ge=1, le=1024)
    requests_per_minute: Float | None = Field(default=None, gt=0)
    timeout_s: Float = Field(default=120.0, gt=0)
    max_attempts: Int = Field(default=6, ge=1)
    backoff_initial_s: Float = Field(default=1.0, ge=0)
    backoff_max_s: Float = Field(default=60.0, ge=0)
    max_error_rate: Float = Field(default=0.05, ge=0.0, le=1.0)
    batch_size: Int = Field(default=8, ge=1)
    progress_every_s: Float = Field(default=30.0, gt=0)


class ModelSpec(Strict):
    """One model, declared once; `compare` refers to it by name."""

    backend: Literal["hf", "openai", "transformers"]
    model: str | None = None
    tokenizer: str | None = None
    system_prompt: str | None = None
    provider: str | None = None
    endpoint_url: str | None = None
    base_url: str | list[str] | None = None  # openai: the server, or a list of replicas serving the same model
    api_key_env: str | None = None
    device: str | None = None
    adapter: str | None = None  # transformers: a PEFT adapter's folder or hub id; openai: the name it is served under
    generation: GenerationOverrides = Field(default_factory=GenerationOverrides)
    concurrency: Int | None = Field(default=None, ge=1, le=1024)
    requests_per_minute: Float | None = Field(default=None, gt=0)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and (not ENV_VAR_PATTERN.fullmatch(name) or TOKEN_PATTERN.search(name)):
            raise ValueError(
                "must name an environment variable (upper-case letters, digits and '_', such as OPENAI_API_KEY), "
                "not hold the key: export the key in that variable"
            )
        return name

    @field_validator("endpoint_url")
    @classmethod
    def _url_without_key(cls, url: str | None) -> str | None:
        if url is not None:
            refuse_credentials_in_url(url, "put the key in the variable named by api_key_env")
        return url

    @field_validator("base_url", mode="before")
    @classmethod
    def _server_urls(cls, urls: Any) -> Any:
        """One URL, or replicas each checked under its own index (base_url[1]), so the message names the one at
        fault."""
        if isinstance(urls, str):
            check_server_url(urls)
        if urls is None or isinstance(urls, str):
            return urls
        if not isinstance(urls, list):
            raise ValueError("must be a URL, or a list of the URLs of replicas serving the same model")
        if not urls:
            raise ValueError("list at least one URL (or give the one URL as text)")
        problems, first = [], {}
        for i, url in enumerate(urls):
            try:
                if not isinstance(url, str):
                    raise ValueError("must be a URL such as http://localhost:8000/v1")
                check_server_url(url)
                same = first.setdefault(url.rstrip("/"), i)
                if same != i:
                    raise ValueError(f"repeats base_url[{same}]; list each replica once")
            except ValueError as e:
                reason = PydanticCustomError("value_error", "{reason}", {"reason": str(e)})
                problems.append(InitErrorDetails(type=reason, loc=(i,), input=url))
        if problems:
            raise ValidationError.from_exception_data("base_url", problems)
        return urls

    @model_validator(mode="after")
    def _backend_fields(self) -> ModelSpec:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://localhost:8000/v1)")
        if self.backend == "hf" and self.provider and self.endpoint_url:
            raise ValueError(
                "set either provider (Inference Providers) or endpoint_url (a dedicated endpoint), not both"
            )
        if self.backend != "hf" and (self.provider or self.endpoint_url):
            raise ValueError("provider and endpoint_url are for backend 'hf'")
        if self.backend != "openai" and self.base_url:
            raise ValueError("base_url is for backend 'openai'")
        if self.backend != "transformers" and self.device:
            raise ValueError("device is for backend 'transformers'")
        if self.backend == "hf" and self.adapter:
            raise ValueError(
                "adapter is for backend 'transformers' (an adapter's folder) or 'openai' (the name a server such as "
                "vLLM serves it under)"
            )
        if self.model is None and not (self.backend == "hf" and self.endpoint_url):
            raise ValueError("model is required")
        if self.needs_prompt and not (self.tokenizer or self.model):
            raise ValueError("a dedicated endpoint needs tokenizer (hub id or folder) to render its chat template")
        return self

    @property
    def base_urls(self) -> list[str]:
        """The openai server's replicas, however base_url gives them (one URL, or a list)."""
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url or [])

    @property
    def needs_prompt(self) -> bool:
        """Backends that take raw text, so the format stage renders the model's own chat template."""
        return self.backend == "transformers" or (self.backend == "hf" and self.endpoint_url is not None)

    def generation_params(self, defaults: GenerationParams) -> GenerationParams:
        return defaults.model_copy(update=self.generation.model_dump(exclude_unset=True))


def check_server_url(url: str) -> None:
    """An openai base_url: http(s), and no key in it."""
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError("must be an http(s) URL such as http://localhost:8000/v1")
    refuse_credentials_in_url(url, "put the key in the variable named by api_key_env")


def refuse_credentials_in_url(url: str, hint: str) -> None:
    """A URL is recorded in dvc.lock and shown in logs: a user:key@ part or a key in its query would go with it."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError(f"must not carry credentials (user:key@): {hint}")
    if any(word in name.lower() for name, _ in parse_qsl(parts.query) for word in SECRET_QUERY_WORDS):
        raise ValueError(f"must not carry a key in its query string: {hint}")


class ArgillaParams(Strict):
    """Where annotation happens: `local` is the embedded server; anything else is a hosted Argilla's URL."""

    url: str = "local"
    data_dir: Path = Path(".argilla")
    port: Int = Field(default=6900, ge=1, le=65535)
    timeout_s: Float = Field(default=60.0, gt=0)
    # HF_TOKEN as `Authorization: Bearer` (a private Hugging Face Space): auto = only to *.hf.space hosts
    send_hf_token: Literal["auto", "always", "never"] = "auto"

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if url != "local" and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(
                "must be 'local' (the embedded server) or an http(s) URL such as https://my-argilla.hf.space"
            )
        refuse_credentials_in_url(url, "put the key in ARGILLA_API_KEY")
        return url.rstrip("/")


class Criterion(Strict):
    """One part of a cumulative rubric: the points it may give, which add up with the others' to the total."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    title: str = Field(min_length=1, max_length=60)
    points: list[Int] = Field(min_length=2)
    description: str = ""  # plain text: what earns the points (the question's tooltip, the judge's guide)

    @field_validator("points")
    @classmethod
    def _points(cls, points: list[int]) -> list[int]:
        if points != sorted(set(points)) or points[0] < 0 or points[-1] > RATING_TOP:
            raise ValueError(f"points: {points} must rise, without repeats, within 0-{RATING_TOP}")
        return points


def _code_rubric() -> list[Criterion]:
    return [
        Criterion(
            name="comments_and_docstrings",
            title="Comments and docstring",
            points=[0, 1, 2],
            description="+1 some useful comments or a docstring; +2 a clear docstring and comments where the logic "
            "is not obvious.",
        ),
        Criterion(
            name="test_example",
            title="Test example",
            points=[0, 1, 2],
            description="+1 an example of use; +2 runnable tests or asserts that check the behaviour, including an "
            "edge case.",
        ),
        Criterion(
            name="runs_correctly",
            title="Runs correctly",
            points=[0, 3],
            description="+3 (worth the most) if the code runs and does what the instruction asks (you ran it, or the "
            "execution result shown says pass).",
        ),
    ]


class RubricParams(Strict):
    """The scale annotators and the judge score each answer on, and, for a cumulative rubric, its criteria: the
    rating questions, the tooltips, the judge's prompt and JSON shape, pull's checks and analyze's ranges all follow
    it. The default is the cumulative 0-7 code rubric; a 1-5 Likert scale is `low: 1, high: 5, criteria: []`."""

    low: Int = Field(default=0, ge=0, le=RATING_TOP)
    high: Int = Field(default=7, ge=1, le=RATING_TOP)
    intro: str = "Start at 0 and add up the points."  # plain text, said before the criteria
    criteria: list[Criterion] = Field(default_factory=_code_rubric)
    note: str = "0 for no code, code for a different task, or a refusal."  # plain text, said after them

    @model_validator(mode="after")
    def _adds_up(self) -> RubricParams:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError("criteria: two criteria share a name")
        if self.criteria:
            least, most = sum(c.points[0] for c in self.criteria), sum(c.points[-1] for c in self.criteria)
            if (least, most) != (self.low, self.high):
                raise ValueError(
                    f"criteria: their points add up to {least}-{most}, not the scale {self.low}-{self.high}"
                )
        return self

    @property
    def span(self) -> int:
        return self.high - self.low


class AnnotationParams(Strict):
    """The Argilla dataset annotators work in, and how records reach them."""

    workspace: str = "llm-feedback"
    dataset: str = Field(default="code-answers", min_length=1, max_length=DATASET_NAME_MAX)
    guidelines: Path = Path("annotation/guidelines.md")
    seed: Int = 42
    assignment: Literal["metadata", "overlap"] = "metadata"
    groups: Int = Field(default=2, ge=1, le=1000)
    min_submitted: Int = Field(default=1, ge=1, le=100)
    on_annotated_change: Literal["fail", "skip", "new_record"] = "fail"
    recreate: Bool = False
    force: Bool = False
    batch_size: Int = Field(default=500, ge=1, le=1000)
    round_size: Int | None = Field(default=None, ge=1)  # records per round (expected); None: every record at once
    select: Literal["random", "active"] = "random"  # how a round's records are drawn; active: where the judge is unsure
    layout: Literal["side_by_side", "stacked"] = "side_by_side"  # the answers in columns, or one under another
    rubric: Literal["total", "criteria"] = "total"  # one rating per answer, or one per criterion (pull adds them up)
    preference: Bool = False  # also ask which response is better (or a tie)

    @field_validator("workspace")
    @classmethod
    def _workspace_name(cls, name: str) -> str:
        if not WORKSPACE_PATTERN.fullmatch(name):
            raise ValueError(f"{name!r:.60} is not a name Argilla takes: use letters, digits, '-' and '_'")
        return name

    @model_validator(mode="after")
    def _assignment(self) -> AnnotationParams:
        if self.force and not self.recreate:
            raise ValueError("force only applies with recreate: true")
        return self


class AnalyzeParams(Strict):
    """How annotations become scores and how sure we are of them."""

    aggregate: Literal["mean", "median", "majority"] = "mean"
    tie_margin: Float = Field(default=0.0, ge=0.0)
    bootstrap: Int = Field(default=1000, ge=100, le=100_000)
    permutations: Int = Field(default=10_000, ge=100, le=1_000_000)  # sign flips behind each pair's p-value
    confidence: Float = Field(default=0.95, gt=0.5, lt=1.0)
    min_difference: Float = Field(default=0.5, gt=0.0)  # the gap the "tasks for 80% power" figure is for
    exclude_annotators: list[str] = Field(default_factory=list)
    seed: Int = 0
    lowest: Int = Field(default=20, ge=0)
    disagreements: Int = Field(default=20, ge=0)  # records listed in reports/disagreements.md
    # annotators disagree on a record when their scores of one answer differ by this much: analyze lists it, push
    # marks it needs_review (3: as much as the rubric's "runs correctly")
    disagreement_spread: Int = Field(default=3, ge=1, le=7)


class ExportParams(Strict):
    """Which annotated answers become training data."""

    sft_min_score: Float = Field(default=6.0, ge=0.0)
    dpo_min_margin: Float = Field(default=2.0, gt=0.0)
    test_fraction: Float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: Int = 0
    push_to_hub: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")
    private: Bool = True


class JudgeParams(Strict):
    """An LLM judge scoring every answer with the annotators' rubric."""

    enabled: Bool = False
    model: str | None = None  # a name under models:, compared or not
    json_mode: Bool = True  # ask for JSON where the backend can (OpenAI response_format, TGI grammar)
    pairwise: Bool = False  # also ask which answer is better, in both orders
    max_new_tokens: Int = Field(default=512, ge=16)


class ExecuteParams(Strict):
    """Running each answer's code with its task's tests, in a sandbox."""

    enabled: Bool = False
    tests_column: str | None = "tests"  # a task column of asserts (the sample's)
    reference_column: str | None = None  # else: a column holding a reference solution that ends with asserts
    cpu_s: Int = Field(default=10, ge=1, le=3600)
    wall_s: Float = Field(default=30.0, gt=0, le=3600)
    memory_mb: Int = Field(default=1024, ge=64)
    file_mb: Int = Field(default=16, ge=1)
    processes: Int = Field(default=32, ge=1)
    workers: Int | None = Field(default=None, ge=1)  # default and cap: the number of cores
    python: str | None = None  # the interpreter for generated code (default: the pipeline's, if others may read it)


class LoraParams(Strict):
    """The low-rank adapter peft trains: its updates are scaled by alpha / rank."""

    rank: Int = Field(default=16, ge=1, le=1024)
    alpha: Int = Field(default=32, ge=1)
    dropout: Float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"  # peft's name for every linear layer but the output head


class TrainParams(Strict):
    """Fine-tuning a declared model on export's train split with TRL, LoRA through peft unless tuning is full."""

    enabled: Bool = False
    base: str | None = None  # a name under models: with backend transformers
    name: str = Field(default="tuned", pattern=MODEL_NAME_PATTERN)  # the result goes to <paths.models>/<name>
    method: Literal["sft", "dpo", "sft_then_dpo"] = "sft"
    tuning: Literal["lora", "full"] = "lora"
    merge: Bool = False  # lora: write the base with the adapter merged in, instead of the adapter alone
    lora: LoraParams = Field(default_factory=LoraParams)
    learning_rate: Float = Field(default=0.0002, gt=0.0, le=1.0)
    epochs: Float = Field(default=3.0, gt=0.0)
    max_steps: Int | None = Field(default=None, ge=1)  # optimizer steps; when set, epochs is not used
    batch_size: Int = Field(default=4, ge=1)
    gradient_accumulation: Int = Field(default=4, ge=1)
    max_length: Int = Field(default=2048, ge=16)  # tokens per example; longer ones are cut
    beta: Float = Field(default=0.1, gt=0.0)  # DPO: how far the tuned model may move from the reference
    seed: Int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    gradient_checkpointing: Bool = False
    save_steps: Int = Field(default=50, ge=1)  # a checkpoint every this many steps: a killed run resumes there
    logging_steps: Int = Field(default=10, ge=1)  # a point of the loss curve every this many steps
    progress_every_s: Float = Field(default=30.0, gt=0)  # progress lines when not on a terminal
    push_to_hub: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")  # a model repo id
    private: Bool = True

    @field_validator("learning_rate", "beta", mode="before")
    @classmethod
    def _exponent_without_dot(cls, value: Any) -> Any:
        """YAML reads 2e-4 as text; say how to write it instead of only that a number was expected."""
        if isinstance(value, str) and re.fullmatch(r"[-+]?[0-9]+[eE][-+]?[0-9]+", value.strip()):
            raise ValueError(f"YAML reads {value} as text: write {float(value)!r} (or with a dot: 2.0e-4)")
        return value

    @model_validator(mode="after")
    def _merge_needs_lora(self) -> TrainParams:
        if self.merge and self.tuning == "full":
            raise ValueError("merge: a fully tuned model has no adapter to merge (merge is for tuning: lora)")
        return self


class EvaluateParams(Strict):
    """The tuned model against its base on export's test split, rated by people in a dataset of its own."""

    dataset: str = Field(default="code-answers-{tuned}-vs-{base}-{weights}", min_length=1)
    limit: Int | None = Field(default=None, ge=1)  # at most this many held-out tasks


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
    rubric: RubricParams = Field(default_factory=RubricParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    compare: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _dataset_per_comparison(cls, data: Any) -> Any:
        """`{compare}` in annotation.dataset becomes the compared models' names (a-vs-b): each comparison gets a
        dataset of its own, and an earlier comparison's dataset keeps its records, annotations and verdict."""
        annotation = data.get("annotation") if isinstance(data, dict) else None
        compare = data.get("compare") if isinstance(data, dict) else None
        name = annotation.get("dataset") if isinstance(annotation, dict) else None
        if isinstance(name, str) and COMPARISON in name and isinstance(compare, list) and compare:
            named = name.replace(COMPARISON, "-vs-".join(str(model) for model in compare))
            data = {**data, "annotation": {**annotation, "dataset": named}}
        return data

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in models:
            if not re.match(MODEL_NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} may use only letters, digits, '.', '_' and '-'")
        return models

    @model_validator(mode="after")
    def _outputs_apart(self) -> Params:
        overlap = self.paths.overlap()
        if overlap:
            raise ValueError(overlap)
        return self

    @model_validator(mode="after")
    def _on_the_scale(self) -> Params:
        """Margins and thresholds in points must fit the rubric's scale."""
        scale = self.rubric
        for key, value in {
            "analyze.tie_margin": self.analyze.tie_margin,
            "analyze.min_difference": self.analyze.min_difference,
            "export.dpo_min_margin": self.export.dpo_min_margin,
        }.items():
            if value > scale.span:
                raise ValueError(f"{key}: {value} points is more than the rubric's span ({scale.low}-{scale.high})")
        if not scale.low <= self.export.sft_min_score <= scale.high:
            raise ValueError(
                f"export.sft_min_score: {self.export.sft_min_score} is off the rubric's scale "
                f"({scale.low}-{scale.high})"
            )
        if self.annotation.rubric == "criteria" and not scale.criteria:
            raise ValueError("annotation.rubric: criteria asks each criterion on its own, and rubric.criteria is empty")
        return self

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

    @model_validator(mode="after")
    def _train_base_declared(self) -> Params:
        """Training starts from a declared model that transformers loads; checked only when training is on."""
        train = self.train
        if not train.enabled:
            return self
        if train.base not in self.models:
            declared = ", ".join(self.models) or "none"
            raise ValueError(f"train.base: {train.base!r} is not declared under models: (declared: {declared})")
        base = self.models[train.base]
        if base.backend != "transformers":
            raise ValueError(
                f"train.base: {train.base!r} has backend {base.backend!r}; training loads the model with "
                "transformers (backend: transformers)"
            )
        if base.adapter:
            raise ValueError(f"train.base: {train.base!r} has an adapter; train from the model it adapts")
        if train.name == train.base:
            raise ValueError(f"train.name: {train.name!r} is the base's name; give the tuned model its own")
        return self


def load_params(path: Path = DEFAULT_PARAMS_FILE) -> Params:
    """Load and validate params.yaml; any problem becomes one ConfigError line naming the key."""
    raw = _read_sections(path)
    token_at = _find_token(raw)
    if token_at is not None:
        raise ConfigError(
            f"{path}: {token_at}: holds what looks like an access token; tokens and keys come from the environment "
            "(HF_TOKEN, OPENAI_API_KEY, the variable a model's api_key_env names), never from params.yaml"
        )
    try:
        return Params.model_validate(raw, context={"root": Path(path).parent})
    except ValidationError as e:
        raise ConfigError(f"{path}: {describe_validation_error(e)}") from None


def load_argilla_params(path: Path = DEFAULT_PARAMS_FILE) -> ArgillaParams:
    """Only the argilla: section, validated: the server commands need nothing else, so a mistake elsewhere in the
    file never keeps anyone from starting or stopping the annotation server."""
    section = _read_sections(path).get("argilla") or {}
    if _find_token(section) is not None:
        raise ConfigError(f"{path}: argilla: holds what looks like an access token; keys come from the environment")
    try:
        return ArgillaParams.model_validate(section)
    except ValidationError as e:
        raise ConfigError(f"{path}: argilla: {describe_validation_error(e)}") from None


def _read_sections(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the project's root)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        raw: Any = load_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


# ---------------------------------------------------------------------------------------------------------------------
# YAML with unique keys


class SurprisingYAML(yaml.MarkedYAMLError):
    """YAML that PyYAML would read in a way nobody meant: a key given twice (YAML requires unique keys; PyYAML keeps
    the last one silently), or an anchor that contains itself (an endless structure)."""


def load_yaml(text: str) -> Any:
    """yaml.safe_load, except that a key given twice in one mapping is an error naming both lines."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_unique_keys(node, (), set(), set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_unique_keys(node: yaml.Node, where: tuple, done: set[int], inside: set[int]) -> None:
    if id(node) in inside:
        raise SurprisingYAML(
            problem=f"{_dotted(where)} contains itself (through an alias)", problem_mark=node.start_mark
        )
    if id(node) in done:  # an alias to a node already checked
        return
    inside.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in first:
                    line = first[key.tag, key.value]
                    raise SurprisingYAML(
                        problem=f"{_dotted((*where, key.value))} is given twice (first at line {line}); keep one",
                        problem_mark=key.start_mark,
                    )
                first[key.tag, key.value] = key.start_mark.line + 1
            _check_unique_keys(value, (*where, key.value if isinstance(key, yaml.ScalarNode) else "?"), done, inside)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, (*where, i), done, inside)
    inside.discard(id(node))
    done.add(id(node))


def _dotted(where: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in where).lstrip(".")


def yaml_problem(error: yaml.YAMLError) -> str:
    """The problem and where it is, on one line."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


# ---------------------------------------------------------------------------------------------------------------------
# secrets: never accepted, never echoed


def looks_like_secret(text: str) -> bool:
    """A known token format, or random-looking text that an error message must not repeat."""
    return bool(TOKEN_PATTERN.search(text) or HIGH_ENTROPY_PATTERN.search(text))


def _find_token(value: Any, where: tuple = ()) -> str | None:
    """The dotted key of the first value (or key) in params that holds a known token format."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and TOKEN_PATTERN.search(key):
                return _dotted(where) or "(top level)"
            found = _find_token(item, (*where, key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_token(item, (*where, i))
            if found:
                return found
    elif isinstance(value, str) and TOKEN_PATTERN.search(value):
        return _dotted(where)
    return None


def _may_hold_secret(key: str, value: Any) -> bool:
    """A value pasted into a key like api_key_env may be the key itself: never echo it, nor anything random-looking."""
    return any(word in key.lower() for word in ("key", "token", "secret", "password")) or looks_like_secret(repr(value))


def describe_validation_error(error: ValidationError) -> str:
    """All validation problems on one line, each led by its dotted key."""
    parts = []
    for item in error.errors():
        key = _dotted(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (misspelt, or from a newer version?)"
        elif (
            item["type"] not in {"value_error", "missing"}
            and "input" in item
            and not _may_hold_secret(key, item["input"])
        ):
            message = f"{message} (got {item['input']!r:.60})"
        parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts)
