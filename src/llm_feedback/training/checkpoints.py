"""Where a run keeps its checkpoints, so a killed run resumes where it stopped and never from another run's.

Each run has a folder named by its fingerprint (settings, base model, data, code): a run with other inputs starts
afresh, and the folders of earlier runs are removed when it starts. The folder goes once the result is written, so
checkpoints never outlive the run (and are never part of the DVC output).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

CHECKPOINT = re.compile(r"checkpoint-([0-9]+)")
STATE_FILE = "trainer_state.json"  # the Trainer writes it last: a checkpoint without it was cut short
DONE_FILE = "done.json"  # a phase that finished keeps its result under <phase>/final


def run_folder(root: Path, *, name: str, fingerprint: str) -> Path:
    """<root>/<name>/<fingerprint>, created; other runs' folders of the same name are removed."""
    parent = Path(root) / name
    if parent.is_dir():
        for other in parent.iterdir():
            if other.name != fingerprint:
                shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink()
    folder = parent / fingerprint
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder`; newer ones cut short by a kill are removed."""
    if not Path(folder).is_dir():
        return None
    numbered = sorted(
        (int(m.group(1)), path)
        for path in Path(folder).iterdir()
        if path.is_dir() and (m := CHECKPOINT.fullmatch(path.name))
    )
    for _, path in reversed(numbered):
        if step_of(path) is not None:
            return path
        shutil.rmtree(path, ignore_errors=True)
    return None


def step_of(checkpoint: Path) -> int | None:
    """The optimizer step a checkpoint holds, or None when it is incomplete."""
    try:
        return int(json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def finished_phase(folder: Path) -> dict | None:
    """What a finished phase recorded (its figures and loss curve), or None when it has not finished."""
    try:
        return json.loads((Path(folder) / "final" / DONE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def discard(folder: Path) -> None:
    """The run's checkpoints once its result is written, and the name's folder when nothing else is in it."""
    shutil.rmtree(folder, ignore_errors=True)
    if folder.parent.is_dir() and not any(folder.parent.iterdir()):
        folder.parent.rmdir()
