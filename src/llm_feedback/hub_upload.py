"""A folder to a Hugging Face Hub repository (export's datasets, train's tuned model), with the token from HF_TOKEN
only, and a failure told in one line."""

from __future__ import annotations

import os
from pathlib import Path

from llm_feedback.errors import ConfigError, PipelineError


def upload_folder(folder: Path, repo_id: str, *, repo_type: str, private: bool, key: str, message: str) -> str:
    """Create the repository if needed and upload the folder as it is; `key` is the params key that asked for it.
    Returns the commit's address."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise ConfigError(f"{key} is {repo_id}: export HF_TOKEN with write access, or set it to null")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=message
        )
    except HfHubHTTPError as e:
        raise PipelineError(f"could not push to the Hub {repo_type} {repo_id}: {str(e).splitlines()[0]}") from None
    prefix = "datasets/" if repo_type == "dataset" else ""
    return str(getattr(commit, "commit_url", f"https://huggingface.co/{prefix}{repo_id}"))
