"""The push receipt (`data/push.json`): which server and dataset hold the annotations, and the blinding map that pull
needs to put each score back on its model. It never holds a key. Published in rounds (annotation.round_size), it
also says which round published each task and the task's chance of being published by each round since (rounds.py):
what analyze needs to weight the human labels.

It is read with a typed model, so a receipt of the wrong shape (edited by hand, cut short, from another version) is
one line naming the key at fault, never a traceback or a string iterated letter by letter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, NotRequired

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from llm_feedback.artifacts import atomic_path
from llm_feedback.errors import InputError
from llm_feedback.params import describe_validation_error

RECEIPT_VERSION = 1

Name = Annotated[StrictStr, Field(min_length=1)]
Round = Annotated[StrictInt, Field(ge=1)]
Probability = Annotated[StrictFloat, Field(gt=0, le=1)]


@with_config(ConfigDict(extra="forbid", strict=True))
class BlindingEntry(TypedDict):
    """One record: its task, the model shown as Response 1, Response 2, ..., and, when its task was published in a
    round, that round and the task's chance of being published by it and by each round drawn since (the last is
    now). A record published outside rounds was certain to be."""

    task_id: Name
    models: Annotated[list[Name], Field(min_length=1)]
    round: NotRequired[Round]
    probabilities: NotRequired[Annotated[list[Probability], Field(min_length=1)]]


@with_config(ConfigDict(extra="forbid", strict=True))
class RoundEntry(TypedDict):
    """One round as drawn: the tasks it drew from (published before or not), how many were expected to be published
    by it (min(tasks, round x round_size)), how many it published, and the seed of its draw (the first round's, kept
    for every later one). A round may publish none: it is kept."""

    round: Round
    tasks: Annotated[StrictInt, Field(ge=1)]
    expected: Annotated[StrictFloat, Field(gt=0)]
    drawn: Annotated[StrictInt, Field(ge=0)]
    seed: StrictInt


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    url: Name
    workspace: Name
    dataset: Name
    dataset_id: Name
    models: Annotated[list[Name], Field(min_length=1)]
    records: Annotated[StrictInt, Field(ge=0)]
    settings_hash: StrictStr
    content_hash: StrictStr
    # record id -> {"task_id": ..., "models": [model shown as Response 1, Response 2, ...]}
    blinding: dict[StrictStr, BlindingEntry] = Field(default_factory=dict)
    rounds: list[RoundEntry] = Field(default_factory=list)  # in order; empty when published outside rounds
    version: Literal[1] = RECEIPT_VERSION

    @field_validator("models")
    @classmethod
    def _distinct(cls, models: list[str]) -> list[str]:
        if len(set(models)) != len(models):
            raise ValueError("lists a model twice")
        return models

    @field_validator("blinding")
    @classmethod
    def _one_position_per_model(cls, blinding: dict[str, BlindingEntry]) -> dict[str, BlindingEntry]:
        for record_id, entry in blinding.items():
            if len(set(entry["models"])) != len(entry["models"]):
                raise ValueError(f"record {record_id}: shows a model twice")
            if ("round" in entry) != ("probabilities" in entry):
                raise ValueError(f"record {record_id}: a round needs its probabilities, and probabilities a round")
        return blinding

    @field_validator("rounds")
    @classmethod
    def _numbered(cls, rounds: list[RoundEntry]) -> list[RoundEntry]:
        if [entry["round"] for entry in rounds] != list(range(1, len(rounds) + 1)):
            raise ValueError("rounds are not numbered 1, 2, ... in order")
        return rounds

    @model_validator(mode="after")
    def _a_chance_per_round(self) -> Receipt:
        for record_id, entry in self.blinding.items():
            if "round" not in entry:
                continue
            wanted = self.current_round - entry["round"] + 1
            if wanted < 1 or len(entry["probabilities"]) != wanted:
                raise ValueError(
                    f"blinding: record {record_id}: {len(entry['probabilities'])} probabilities for rounds "
                    f"{entry['round']} to {self.current_round}"
                )
            if entry["probabilities"] != sorted(entry["probabilities"]):
                raise ValueError(f"blinding: record {record_id}: a chance of being published by a round fell")
        return self

    @property
    def current_round(self) -> int:
        """The last round drawn (0: none)."""
        return len(self.rounds)

    def sampling(self, by_round: int | None = None) -> dict[str, tuple[int, float]]:
        """task_id -> (its round, its chance of being published by round `by_round`) of every task published in a
        round up to `by_round` (default: the last). The tasks published by a round are a draw in which each task was
        in on its own with that chance: the weights of the labels of every round up to it."""
        last = self.current_round if by_round is None else by_round
        if not 0 <= last <= self.current_round:
            raise ValueError(f"by_round: {last}, but the rounds drawn are 1 to {self.current_round}")
        return {
            entry["task_id"]: (entry["round"], entry["probabilities"][last - entry["round"]])
            for entry in self.blinding.values()
            if "round" in entry and entry["round"] <= last
        }

    def chances(self) -> dict[str, tuple[int, list[float]]]:
        """task_id -> (its round, its chance of being published by that round and by each round since)."""
        return {
            entry["task_id"]: (entry["round"], list(entry["probabilities"]))
            for entry in self.blinding.values()
            if "round" in entry
        }

    def orders(self) -> dict[str, list[str]]:
        return {record_id: entry["models"] for record_id, entry in self.blinding.items()}

    def write(self, path: Path) -> None:
        """Without rounds, the receipt is written as before they existed (byte for byte)."""
        data = self.model_dump(exclude=None if self.rounds else {"rounds"})
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def same_dataset(self, url: str, workspace: str, dataset: str) -> bool:
        return (self.url, self.workspace, self.dataset) == (url, workspace, dataset)


def read_receipt(path: Path) -> Receipt:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found (run the push stage first)")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a push receipt")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); run push again") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg}); run push again") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a push receipt (a JSON object was expected); run push again")
    if data.get("version") != RECEIPT_VERSION:
        raise InputError(
            f"{path}: receipt version {data.get('version')!r:.20}, expected {RECEIPT_VERSION} (run push again)"
        )
    try:
        return Receipt.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{path}: not a push receipt: {describe_validation_error(e)[:300]}; run push again") from None
