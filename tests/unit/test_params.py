from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llm_feedback.errors import ConfigError
from llm_feedback.params import GenerationOverrides, ModelSpec, Params, load_params
from tests.conftest import PROJECT_ROOT


def write_params(folder: Path, data: dict | str) -> Path:
    path = folder / "params.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def shipped() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


# The project's own choices, not defaults: Params() declares no models and compares none.
CHOICES = ("models", "compare")


def same(written: object, default: object) -> bool:
    """Equal as YAML means it: 120 and 120.0 are one number, but true is no 1."""
    if isinstance(written, bool) or isinstance(default, bool):
        return type(written) is type(default) and written == default
    return written == default


def disagreements(written: object, default: object, where: str) -> list[str]:
    """Every dotted key where params.yaml and the models' defaults differ, a key missing on either side included."""
    if not (isinstance(written, dict) and isinstance(default, dict)):
        return [] if same(written, default) else [f"{where}: params.yaml has {written!r}, the default is {default!r}"]
    found = []
    for key in [*default, *(k for k in written if k not in default)]:
        if key not in written:
            found.append(f"{where}.{key}: not in params.yaml (the default is {default[key]!r})")
        elif key not in default:
            found.append(f"{where}.{key}: in params.yaml but no field")
        else:
            found.extend(disagreements(written[key], default[key], f"{where}.{key}"))
    return found


def default_of(section: str) -> dict:
    """A section's defaults as YAML would write them."""
    return Params.model_fields[section].get_default(call_default_factory=True).model_dump(mode="json")


def test_the_shipped_params_list_every_knob_at_its_default() -> None:
    """params.yaml documents every knob and the models hold the same defaults, so Params built in code and a
    params.yaml that leaves a key out both mean what the shipped file says."""
    data = shipped()
    assert sorted(data) == sorted(Params.model_fields), "every section"
    found = [
        problem
        for name in Params.model_fields
        if name not in CHOICES
        for problem in disagreements(data[name], default_of(name), name)
    ]
    assert found == []


def test_the_shipped_params_document_every_model_setting() -> None:
    text = params_text()
    section = text[text.index("\n# models:") : text.index("\n# argilla:")]
    undocumented = [
        f for f in [*ModelSpec.model_fields, *GenerationOverrides.model_fields] if not re.search(rf"\b{f}\b", section)
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("section", "edit", "expected"),
    [
        ("execute", lambda s: s.update(cpu_s=12), ["execute.cpu_s: params.yaml has 12, the default is 10"]),
        ("fetch", lambda s: s.pop("revision"), ["fetch.revision: not in params.yaml (the default is None)"]),
        ("fetch", lambda s: s.update(revison=None), ["fetch.revison: in params.yaml but no field"]),
        ("export", lambda s: s.update(private=1), ["export.private: params.yaml has 1, the default is True"]),
        ("generate", lambda s: s.update(timeout_s=120), []),
    ],
)
def test_a_drifted_default_is_named(section: str, edit, expected: list[str]) -> None:
    written = shipped()[section]
    edit(written)
    assert disagreements(written, default_of(section), section) == expected


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
        (
            lambda p: p["models"].update(x={"backend": "openai", "model": "m"}),
            "models.x: backend 'openai' needs base_url",
        ),
        (lambda p: p["models"].update({"a b": {"backend": "hf", "model": "m"}}), "models: model name 'a b'"),
        (
            lambda p: p["models"]["local-server"].update(base_url=[]),
            "models.local-server.base_url: list at least one URL",
        ),
        (
            lambda p: p["models"]["local-server"].update(base_url=["http://a:8000/v1", "localhost:8001/v1"]),
            "models.local-server.base_url[1]: must be an http(s) URL",
        ),
        (
            lambda p: p["models"]["local-server"].update(base_url=["http://a/v1", "http://b/v1", "http://a/v1/"]),
            "models.local-server.base_url[2]: repeats base_url[0]",
        ),
        (
            lambda p: p["models"]["local-server"].update(base_url=["http://a/v1", 8000]),
            "models.local-server.base_url[1]: must be a URL",
        ),
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
    with pytest.raises(ConfigError, match=r"models\.x\.api_key_env") as error:
        load_params(write_params(tmp_path, data))
    assert secret not in str(error.value)


def params_text() -> str:
    return (PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8")


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith(fragment)]
    return lines[occurrence - 1]


@pytest.mark.parametrize(
    ("edit", "key", "fragment"),
    [
        (lambda t: t + "\nfetch:\n  limit: 3\n", "fetch", "fetch:"),  # a second section would replace the first
        (
            lambda t: t.replace("  smollm2-360m:\n", "  qwen-coder-0.5b:\n", 1),
            "models.qwen-coder-0.5b",
            "  qwen-coder-0.5b:",
        ),
        (lambda t: t.replace("  limit: null", "  limit: null\n  seed: 7"), "fetch.seed", "  seed:"),
    ],
)
def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path: Path, edit, key: str, fragment: str) -> None:
    text = edit(params_text())
    path = write_params(tmp_path, text)
    first, second = line_of(text, fragment), line_of(text, fragment, 2)
    with pytest.raises(ConfigError) as error:
        load_params(path)
    assert str(error.value) == (
        f"{path}: not valid YAML: line {second}, column {fragment.index(fragment.strip()) + 1}: "
        f"{key} is given twice (first at line {first}); keep one"
    )


def test_the_same_key_in_two_sections_is_no_duplicate(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, params_text().replace("  seed: 42\n  limit", "  seed: 5\n  limit")))
    assert (params.fetch.seed, params.annotation.seed, params.analyze.seed) == (5, 42, 0)


SECRETS = {
    "hf": "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7",
    "openai": "sk-proj-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2",
}


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda p, s: p["models"]["local-server"].update(api_key_env=s["hf"]), "models.local-server.api_key_env"),
        (lambda p, s: p["models"]["local-server"].update(api_key_env=s["openai"]), "models.local-server.api_key_env"),
        (lambda p, s: p["export"].update(push_to_hub=s["hf"]), "export.push_to_hub"),
        (lambda p, s: p["export"].update(push_to_hub=f"org/{s['hf']}"), "export.push_to_hub"),
        (
            lambda p, s: p["models"]["local-server"].update(base_url=f"http://me:{s['openai']}@localhost:8000/v1"),
            "models.local-server.base_url",
        ),
        (
            lambda p, s: p["models"]["local-server"].update(base_url="http://me:plainpassword@localhost:8000/v1"),
            "models.local-server.base_url",
        ),
        (
            lambda p, s: p["models"]["local-server"].update(base_url="http://localhost:8000/v1?api_key=plainpassword"),
            "models.local-server.base_url",
        ),
        (
            lambda p, s: p["models"]["local-server"].update(
                base_url=["http://localhost:8000/v1", "http://me:plainpassword@localhost:8001/v1"]
            ),
            "models.local-server.base_url[1]",
        ),
        (
            lambda p, s: p["models"]["llama-3.3-70b"].update(
                provider=None, endpoint_url="https://u:plainpassword@e.example"
            ),
            "models.llama-3.3-70b.endpoint_url",
        ),
        (lambda p, s: p["argilla"].update(url="https://owner:plainpassword@argilla.example"), "argilla.url"),
        (lambda p, s: p["fetch"].update(dataset=s["hf"]), "fetch.dataset"),
    ],
)
def test_a_secret_in_params_is_refused_and_never_echoed(tmp_path: Path, mutate, key: str) -> None:
    data = shipped()
    mutate(data, SECRETS)
    with pytest.raises(ConfigError) as error:
        load_params(write_params(tmp_path, data))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'params.yaml'}: {key}: ") and "\n" not in message
    for secret in [*SECRETS.values(), "plainpassword"]:
        assert secret not in message


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "MY_LLM_KEY", "_X", "KEY2"])
def test_api_key_env_takes_a_variable_name(tmp_path: Path, name: str) -> None:
    data = shipped()
    data["models"]["local-server"]["api_key_env"] = name
    assert load_params(write_params(tmp_path, data)).models["local-server"].api_key_env == name


@pytest.mark.parametrize("value", ["my_key", "openai-key", "2KEY", "Bearer XYZ", "AKIAIOSFODNN7EXAMPLE"])
def test_api_key_env_refuses_what_is_not_an_upper_case_name(tmp_path: Path, value: str) -> None:
    data = shipped()
    data["models"]["local-server"]["api_key_env"] = value
    with pytest.raises(ConfigError, match=r"models\.local-server\.api_key_env: ") as error:
        load_params(write_params(tmp_path, data))
    assert value not in str(error.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("seed", True, "fetch.seed: Input should be a valid integer (got True)"),
        ("limit", 5.0, "fetch.limit: Input should be a valid integer (got 5.0)"),
        ("limit", "5", "fetch.limit: Input should be a valid integer (got '5')"),
        ("shuffle", 1, "fetch.shuffle: Input should be a valid boolean (got 1)"),
    ],
)
def test_numbers_and_switches_are_taken_as_written(tmp_path: Path, key: str, value: object, expected: str) -> None:
    data = shipped()
    data["fetch"][key] = value
    with pytest.raises(ConfigError) as error:
        load_params(write_params(tmp_path, data))
    assert str(error.value) == f"{tmp_path / 'params.yaml'}: {expected}"


def test_a_bool_is_no_number_anywhere(tmp_path: Path) -> None:
    data = shipped()
    data["generation"]["temperature"] = True
    data["generate"]["concurrency"] = False
    data["export"]["seed"] = True
    with pytest.raises(ConfigError) as error:
        load_params(write_params(tmp_path, data))
    for key in ("generation.temperature", "generate.concurrency", "export.seed"):
        assert f"{key}: Input should be a valid" in str(error.value)


@pytest.mark.parametrize(
    ("paths", "setup", "expected"),
    [
        (
            {"tasks": "../outside/tasks.parquet"},
            None,
            "paths.tasks: ../outside/tasks.parquet is outside the project folder",
        ),
        ({"tasks": "/tmp/x/tasks.parquet"}, None, "paths.tasks: /tmp/x/tasks.parquet is outside the project folder"),
        ({"export": "data/../../x"}, None, "paths.export: data/../../x is outside the project folder"),
        ({"reports": "."}, None, "paths.reports: . is the project folder itself"),
        (
            {"tasks": "data/tasks.parquet"},
            "data/tasks.parquet/",
            "paths.tasks: data/tasks.parquet is a folder; name a file",
        ),
        ({"reports": "reports"}, "reports", "paths.reports: reports is a file; name a folder"),
        (
            {"tasks": "notes/tasks.parquet"},
            "notes",
            "paths.tasks: notes/tasks.parquet cannot be created: notes is a file",
        ),
        ({"tasks": "data/export/tasks.parquet"}, None, "paths.export: data/export overlaps paths.tasks"),
        ({"prompts": "data/tasks.parquet"}, None, "paths.prompts: data/tasks.parquet overlaps paths.tasks"),
    ],
)
def test_output_paths_stay_inside_the_project_each_in_its_place(
    tmp_path: Path, paths: dict, setup: str | None, expected: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    if setup is not None:
        target = project / setup
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if setup.endswith("/") else target.write_text("x")
    data = shipped()
    data["paths"].update(paths)
    with pytest.raises(ConfigError) as error:
        load_params(write_params(project, data))
    assert str(error.value).startswith(f"{project / 'params.yaml'}: {expected}")
    assert "\n" not in str(error.value)


def test_output_paths_inside_the_project_are_fine_also_as_absolute_paths(tmp_path: Path) -> None:
    data = shipped()
    data["paths"].update(tasks=str(tmp_path / "data/tasks.parquet"), export="out/export")
    params = load_params(write_params(tmp_path, data))
    assert params.paths.tasks == tmp_path / "data/tasks.parquet"


@pytest.mark.parametrize("name", ["my space", "team.one", "", "ws/other", "team\n"])
def test_a_workspace_name_argilla_refuses_is_named(tmp_path: Path, name: str) -> None:
    data = shipped()
    data["annotation"]["workspace"] = name
    with pytest.raises(
        ConfigError, match=r"annotation\.workspace: .* is not a name Argilla takes: use letters, digits"
    ):
        load_params(write_params(tmp_path, data))


def test_workspace_names_argilla_takes(tmp_path: Path) -> None:
    data = shipped()
    data["annotation"]["workspace"] = "Team_A-2"
    assert load_params(write_params(tmp_path, data)).annotation.workspace == "Team_A-2"


def test_anchors_and_merge_keys_still_work_and_a_self_containing_one_is_refused(tmp_path: Path) -> None:
    shared = (
        "models:\n  a: &server\n    backend: openai\n    model: m\n    base_url: http://127.0.0.1:9/v1\n"
        "  b: *server\n  c:\n    <<: *server\n    model: other\ncompare: [a, b, c]\n"
    )
    params = load_params(write_params(tmp_path, shared))
    assert [params.models[m].model for m in "abc"] == ["m", "m", "other"]
    with pytest.raises(ConfigError) as error:
        load_params(write_params(tmp_path, "fetch:\n  keep_columns: &x [*x]\n" + shared))
    assert str(error.value).endswith(
        "not valid YAML: line 2, column 17: fetch.keep_columns[0] contains itself (through an alias)"
    )
