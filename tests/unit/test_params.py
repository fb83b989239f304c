from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llm_feedback.errors import ConfigError
from llm_feedback.params import load_params
from tests.conftest import PROJECT_ROOT


def write_params(folder: Path, data: dict | str) -> Path:
    path = folder / "params.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def shipped() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def test_shipped_params_load_and_compare_declared_models() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.compare == ["qwen-coder-0.5b", "smollm2-360m"]
    assert all(params.models[name].needs_prompt for name in params.compare)
    assert params.fetch.dataset == "bigcode/self-oss-instruct-sc2-exec-filter-50k"
    assert params.fetch.split == "train[:20]"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p["fetch"].update(limt=3), "fetch.limt: unknown key"),
        (lambda p: p["fetch"].update(limit="abc"), "fetch.limit: Input should be a valid integer"),
        (lambda p: p["fetch"].update(source="s3"), "fetch.source: Input should be 'sample', 'file' or 'hub'"),
        (lambda p: p["compare"].append("gpt-9"), "compare[2]: 'gpt-9' is not declared under models:"),
        (lambda p: p.update(compare=[]), "compare: list at least one model"),
        (lambda p: p["models"].update(x={"backend": "openai", "model": "m"}), "models.x: backend 'openai' needs base_url"),
        (lambda p: p["models"].update({"a b": {"backend": "hf", "model": "m"}}), "models: model name 'a b'"),
        (lambda p: p.update(extra_section={}), "extra_section: unknown key"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, mutate, expected: str) -> None:
    data = shipped()
    mutate(data)
    with pytest.raises(ConfigError) as error:
        load_params(write_params(tmp_path, data))
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert error.value.exit_code == 2


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = write_params(tmp_path, "fetch:\n  source: sample\n limit: 3\n")
    with pytest.raises(ConfigError, match=r"params.yaml: not valid YAML: line 3, column 2"):
        load_params(path)


def test_a_key_pasted_into_api_key_env_is_not_echoed(tmp_path: Path) -> None:
    data = shipped()
    secret = "sk-live-0123456789abcdef"
    data["models"]["x"] = {"backend": "openai", "model": "m", "base_url": "http://h/v1", "api_key_env": secret}
    with pytest.raises(ConfigError, match="models.x.api_key_env") as error:
        load_params(write_params(tmp_path, data))
    assert secret not in str(error.value)
