"""A tuned model as generate meets it: what identifies its weights (so a retrained model's answers are never taken
from the request cache), and its adapter loaded onto the base it was trained from."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from llm_feedback.errors import ConfigError
from llm_feedback.params import ModelSpec
from llm_feedback.secrets import scrub

RECORD_FILE = "training.json"  # what the train stage writes beside the weights
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def tuned_identity(spec: ModelSpec) -> dict[str, str]:
    """What a request's hash needs beyond the model's name: the adapter's weights (or, for a server, the name it
    serves the adapter under), and the weights of a model the train stage wrote. Empty for any other model, whose
    hashes stay as they were."""
    found = {}
    if spec.adapter is not None:
        served = spec.backend == "openai" or not Path(spec.adapter).is_dir()
        found["adapter"] = spec.adapter if served else _folder_identity(Path(spec.adapter), _signature(spec.adapter))
    if spec.backend == "transformers" and spec.model and (Path(spec.model) / RECORD_FILE).is_file():
        found["weights"] = _folder_identity(Path(spec.model), _signature(spec.model))
    return found


def _signature(folder: str) -> tuple:
    """Each file's name, size and time: a cached identity holds until one of them changes."""
    return tuple(
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).iterdir() if p.is_file())
    )


@functools.lru_cache(maxsize=64)
def _folder_identity(folder: Path, signature: tuple) -> str:
    """The weights' hash the train stage recorded, else a hash of the adapter's own files."""
    record = read_record(folder)
    if record and record.get("weights_sha"):
        return str(record["weights_sha"])
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def read_record(folder: Path) -> dict | None:
    try:
        data = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def with_adapter(model: Any, *, name: str, spec: ModelSpec, token: str | None) -> Any:
    """The base with the adapter merged in, so generation runs as fast as the base's."""
    location = str(spec.adapter)
    where = f"params.yaml: models.{name}.adapter"
    if Path(location).is_dir():
        record = read_record(Path(location))
        if record is not None and not record.get("trained"):
            reason = record.get("reason") or "its training did not finish"
            raise ConfigError(f"{where}: {location} holds no trained adapter ({reason})")
        trained_on = _base_of(Path(location))
        if trained_on is not None and not _same_model(trained_on, str(spec.model)):
            raise ConfigError(
                f"{where}: {location} was trained on '{trained_on}', and models.{name}.model is '{spec.model}'"
            )
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError(f"{where}: loading an adapter needs peft (pip install -e '.[train]')") from None
    try:
        return PeftModel.from_pretrained(model, location, token=token).merge_and_unload()
    except Exception as e:  # noqa: BLE001 (whatever peft or the Hub raises, one line naming the adapter)
        lines = scrub(str(e)).splitlines()
        raise ConfigError(
            f"{where}: cannot load '{location}' ({(lines[0] if lines else type(e).__name__)[:200]})"
        ) from None


def _base_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None


def _same_model(a: str, b: str) -> bool:
    """One hub id, or one folder however its path is written."""
    if os.path.isdir(a) and os.path.isdir(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a == b
