"""train.push_to_hub: the tuned model's folder as a model repository on the Hugging Face Hub."""

from __future__ import annotations

import os
from pathlib import Path

from llm_feedback.errors import ConfigError, PipelineError


def push_model(folder: Path, repo_id: str, *, private: bool) -> str:
    """Upload the folder as it is (adapter or merged weights, tokenizer, record); the token comes from HF_TOKEN only."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise ConfigError(f"train.push_to_hub is {repo_id}: export HF_TOKEN with write access, or set it to null")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Update the tuned model")
    except HfHubHTTPError as e:
        raise PipelineError(f"could not push to the Hub model {repo_id}: {str(e).splitlines()[0]}") from None
    return str(getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}"))
