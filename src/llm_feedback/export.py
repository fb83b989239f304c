"""export: annotated answers -> fine-tuning data in TRL's formats.

Scores are the ones analyze decided on (its scores artifact), never recomputed here. SFT rows are conversational
(`messages`): per task, an annotator's corrected response when one was written, else the best answer when its score
reaches `export.sft_min_score`. DPO rows are conversational preferences (`prompt`, `chosen`, `rejected`, each a list
of messages): every pair of answers whose scores differ by `export.dpo_min_margin` or more, and each correction
against the worst original. Train and test are split by task, so no task is in both.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llm_feedback.analysis import usable_annotations
from llm_feedback.annotation.values import DEFAULT_SCALE
from llm_feedback.artifacts import MESSAGE, atomic_folder
from llm_feedback.hub_upload import upload_folder
from llm_feedback.params import ExportParams
from llm_feedback.splits import in_test_split

SFT_SCHEMA = pa.schema(
    [
        pa.field("messages", pa.list_(MESSAGE), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # correction | model
        pa.field("model", pa.string()),  # null for a correction
        pa.field("score", pa.float64()),
    ]
)
DPO_SCHEMA = pa.schema(
    [
        pa.field("prompt", pa.list_(MESSAGE), nullable=False),
        pa.field("chosen", pa.list_(MESSAGE), nullable=False),
        pa.field("rejected", pa.list_(MESSAGE), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("chosen_model", pa.string(), nullable=False),  # "correction" for an annotator's corrected response
        pa.field("rejected_model", pa.string(), nullable=False),
        pa.field("score_chosen", pa.float64()),
        pa.field("score_rejected", pa.float64(), nullable=False),
    ]
)
CORRECTION = "correction"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Exported:
    sft: dict[str, pa.Table]
    dpo: dict[str, pa.Table]

    def line(self) -> str:
        return (
            f"SFT {self.sft['train'].num_rows} train + {self.sft['test'].num_rows} test, "
            f"DPO {self.dpo['train'].num_rows} train + {self.dpo['test'].num_rows} test"
        )


def build_exports(
    *,
    scores: pa.Table,
    annotations: pa.Table,
    generations: pa.Table,
    tasks: pa.Table,
    compare: list[str],
    params: ExportParams,
    scale: range = DEFAULT_SCALE,
) -> Exported:
    """`scores` are analyze's per-task scores (the scores artifact), so the training data follows the metrics; the
    corrections come from the annotations that count by analyze's rules."""
    rows, _ = usable_annotations(annotations.to_pandas(), scale=scale)
    scores = scores.to_pandas()
    instructions = dict(zip(tasks.column("task_id").to_pylist(), tasks.column("instruction").to_pylist()))
    answers = {
        (t, m): r
        for t, m, r in zip(*(generations.column(c).to_pylist() for c in ("task_id", "model", "response")))
        if r is not None
    }
    corrections = _corrections(rows)
    rank = {m: k for k, m in enumerate(compare)}

    sft, dpo = [], []
    by_task = {t: group for t, group in scores.groupby("task_id", sort=True)} if not scores.empty else {}
    for task_id in sorted(set(by_task) | set(corrections)):
        if task_id not in instructions:
            continue
        prompt = [{"role": "user", "content": instructions[task_id]}]
        scored = []
        if task_id in by_task:
            group = by_task[task_id]
            scored = sorted(
                ((float(s), m) for m, s in zip(group["model"], group["score"]) if (task_id, m) in answers),
                key=lambda sm: (-sm[0], rank.get(sm[1], len(rank)), sm[1]),
            )
        if task_id in corrections:
            sft.append(
                {
                    "messages": prompt + [_assistant(corrections[task_id])],
                    "task_id": task_id,
                    "source": CORRECTION,
                    "model": None,
                    "score": None,
                }
            )
            if scored:
                worst_score, worst = scored[-1]
                dpo.append(
                    _pair(
                        prompt,
                        task_id,
                        corrections[task_id],
                        CORRECTION,
                        None,
                        answers[(task_id, worst)],
                        worst,
                        worst_score,
                    )
                )
        elif scored and scored[0][0] >= params.sft_min_score:
            best_score, best = scored[0]
            sft.append(
                {
                    "messages": prompt + [_assistant(answers[(task_id, best)])],
                    "task_id": task_id,
                    "source": "model",
                    "model": best,
                    "score": best_score,
                }
            )
        for (high, better), (low, worse) in itertools.combinations(scored, 2):
            if high - low >= params.dpo_min_margin:
                dpo.append(
                    _pair(
                        prompt, task_id, answers[(task_id, better)], better, high, answers[(task_id, worse)], worse, low
                    )
                )
    return Exported(_split(sft, SFT_SCHEMA, params), _split(dpo, DPO_SCHEMA, params))


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _pair(
    prompt: list[dict],
    task_id: str,
    chosen: str,
    chosen_model: str,
    chosen_score: float | None,
    rejected: str,
    rejected_model: str,
    rejected_score: float,
) -> dict:
    return {
        "prompt": prompt,
        "chosen": [_assistant(chosen)],
        "rejected": [_assistant(rejected)],
        "task_id": task_id,
        "chosen_model": chosen_model,
        "rejected_model": rejected_model,
        "score_chosen": chosen_score,
        "score_rejected": rejected_score,
    }


def _corrections(rows: pd.DataFrame) -> dict[str, str]:
    """Per task, the most recent corrected response an annotator submitted."""
    written = rows[(rows["status"] == "submitted") & rows["corrected_response"].notna()]
    written = written[written["corrected_response"].str.strip() != ""]
    latest = written.sort_values(["task_id", "updated_at", "annotator"]).drop_duplicates("task_id", keep="last")
    return dict(zip(latest["task_id"], latest["corrected_response"]))


def _split(rows: list[dict], schema: pa.Schema, params: ExportParams) -> dict[str, pa.Table]:
    test = [in_test_split(r["task_id"], params.seed, params.test_fraction) for r in rows]
    return {
        "train": pa.Table.from_pylist([r for r, t in zip(rows, test) if not t], schema=schema),
        "test": pa.Table.from_pylist([r for r, t in zip(rows, test) if t], schema=schema),
    }


def write_exports(exported: Exported, folder: Path) -> None:
    """<folder>/{sft,dpo}/{train,test}.{parquet,jsonl} and a dataset card naming the configs, replaced together.

    A split without rows is not written: `datasets` cannot load an empty parquet file."""
    with atomic_folder(folder) as staging:
        for kind, tables in (("sft", exported.sft), ("dpo", exported.dpo)):
            for split, table in tables.items():
                if not table.num_rows:
                    continue
                (staging / kind).mkdir(exist_ok=True)
                pq.write_table(table, staging / kind / f"{split}.parquet", compression="zstd")
                with (staging / kind / f"{split}.jsonl").open("w", encoding="utf-8") as f:
                    for row in table.to_pylist():
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (staging / "README.md").write_text(_card(exported), encoding="utf-8")


def _card(exported: Exported) -> str:
    configs = []
    for kind, tables in (("sft", exported.sft), ("dpo", exported.dpo)):
        files = "".join(
            f"  - split: {split}\n    path: {kind}/{split}.parquet\n" for split in SPLITS if tables[split].num_rows
        )
        if files:
            configs.append(f"- config_name: {kind}\n  data_files:\n{files}")
    header = ("---\nconfigs:\n" + "".join(configs) + "---\n\n") if configs else ""
    return (
        header + "# Training data from human annotations\n\n"
        f"- `sft`: conversational (`messages`) rows: {exported.line()}.\n"
        "- `dpo`: conversational preferences (`prompt`, `chosen`, `rejected`).\n\n"
        'Load with `datasets.load_dataset(<repo>, "sft")` or `"dpo"`; both are in TRL\'s formats.\n'
    )


def push_to_hub(folder: Path, repo_id: str, *, private: bool) -> str:
    """Upload the export folder as a dataset repository; the token comes from HF_TOKEN only."""
    return upload_folder(
        folder,
        repo_id,
        repo_type="dataset",
        private=private,
        key="export.push_to_hub",
        message="Update SFT and DPO exports",
    )
