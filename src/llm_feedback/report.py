"""What analyze shows people: `reports/report.md` with PNG charts (readable on any Markdown viewer, without DVC),
`reports/lowest.md` for error analysis."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa

from llm_feedback.analysis import Analysis
from llm_feedback.annotation.values import SCALE, STATUSES
from llm_feedback.artifacts import atomic_folder, atomic_path
from llm_feedback.plot_data import score_distribution

RESPONSE_LINES = 40  # of each answer in lowest.md


def write_metrics(metrics: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_reports(
    analysis: Analysis, folder: Path, *, tasks: pa.Table, generations: pa.Table, lowest: int, how_to_annotate: str
) -> None:
    """reports/report.md (+ PNG charts) and reports/lowest.md, replaced together."""
    with atomic_folder(folder) as staging:
        charts = _charts(analysis, staging) if analysis.metrics["counts"]["scored_tasks"] else []
        (staging / "report.md").write_text(_report(analysis, charts, how_to_annotate), encoding="utf-8")
        (staging / "lowest.md").write_text(_lowest(analysis, tasks, generations, lowest), encoding="utf-8")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _report(analysis: Analysis, charts: list[str], how_to_annotate: str) -> str:
    m = analysis.metrics
    counts = m["counts"]
    lines = ["# Which model answers better", ""]
    responses = counts["responses"]
    summary = [
        f"{counts['scored_tasks']} of {counts['tasks']} tasks scored",
        f"{counts['annotated_records']} of {counts['records']} records annotated",
        "responses: " + ", ".join(f"{responses[s]} {s}" for s in STATUSES),
    ]
    left_out = {
        "stale_scores": "scores of answers since regenerated left out",
        "invalid_responses": "responses with values outside the dataset's settings left out",
        "duplicate_responses": "repeated responses of one annotator counted once",
    }
    summary += [f"{counts[key]} {what}" for key, what in left_out.items() if counts[key]]
    lines += ["; ".join(summary) + ".", ""]
    if not counts["scored_tasks"]:
        lines += ["**No submitted scores yet.** " + how_to_annotate, ""]
        return "\n".join(lines)

    ranked = analysis.ranking()
    lines += [
        "## Mean score (0-7) with 95% bootstrap interval over tasks",
        "",
        "| model | mean | interval | tasks | scores |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {_fmt(v['mean'])} | {_fmt(v['ci_low'])} to {_fmt(v['ci_high'])} | {v['tasks']} | {v['scores']} |"
        for name, v in ranked
    ]
    lines += ["", *charts[:2], ""]
    if m["pairwise"]:
        lines += ["## Head to head", "", "| pair | win | tie | loss | tasks |", "|---|---|---|---|---|"]
        for pair, v in m["pairwise"].items():
            cells = [
                f"{_pct(v[o])} ({_pct(v[f'{o}_ci_low'])} to {_pct(v[f'{o}_ci_high'])})" for o in ("win", "tie", "loss")
            ]
            lines.append(f"| {pair.replace('_vs_', ' vs ')} | {' | '.join(cells)} | {v['tasks']} |")
        lines += ["", *charts[2:3], ""]
    if m["bradley_terry"]:
        lines += [
            "## Bradley-Terry ratings (Elo scale, ties count half)",
            "",
            "| model | rating | interval |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {_fmt(v['rating'], 0)} | {_fmt(v['ci_low'], 0)} to {_fmt(v['ci_high'], 0)} |"
            for name, v in sorted(m["bradley_terry"].items(), key=lambda kv: -(kv[1]["rating"] or -1e9))
        ]
        lines.append("")
    lines += [
        "## Agreement between annotators (Krippendorff's alpha, ordinal)",
        "",
        "| question | alpha | records rated by 2+ |",
        "|---|---|---|",
    ]
    lines += [f"| {q} | {_fmt(v['alpha'], 3)} | {v['records']} |" for q, v in m["agreement"].items()]
    lines += ["", "## Annotators", "", "| annotator | records | mean score given |", "|---|---|---|"]
    lines += [f"| {a} | {v['records']} | {_fmt(v['mean_score'])} |" for a, v in m["annotators"].items()]
    lines += ["", "## Position (does Response 1 get more?)", "", "| position | mean score | scores |", "|---|---|---|"]
    lines += [f"| {p} | {_fmt(v['mean_score'])} | {v['scores']} |" for p, v in m["position"].items()]
    corrections = m["corrections"]
    lines += [
        "",
        "## Corrections",
        "",
        f"{corrections['corrected_responses']} corrected responses written. "
        "Chosen for correction: " + ", ".join(f"{k} {v}" for k, v in corrections["to_correct"].items()) + ".",
    ]
    if m["judge"]:
        j = m["judge"]
        lines += [
            "",
            "## Judge vs humans",
            "",
            f"Spearman {_fmt(j['spearman'], 3)}, quadratic-weighted kappa "
            f"{_fmt(j['kappa_quadratic'], 3)} over {j['pairs']} answers scored by both.",
        ]
    if m["execution"]:
        e = m["execution"]
        lines += ["", "## Execution", "", "| model | pass rate | runs |", "|---|---|---|"]
        lines += [f"| {name} | {_pct(v['pass_rate'])} | {v['runs']} |" for name, v in e["models"].items()]
        lines += [
            "",
            f"Correlation of passing with the human score: {_fmt(e['correlation_with_human'], 3)} "
            f"({e['pairs']} answers).",
        ]
    lines += ["", "The lowest-rated answers, with their instruction and comments: [lowest.md](lowest.md).", ""]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _charts(analysis: Analysis, folder: Path) -> list[str]:
    """PNG charts; returns their Markdown image lines (means, distribution, win rates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = analysis.metrics
    lines = []
    names = [n for n in analysis.models if m["models"][n]["mean"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * len(names)))
    means = [m["models"][n]["mean"] for n in names]
    errors = [
        [v - m["models"][n]["ci_low"] for n, v in zip(names, means)],
        [m["models"][n]["ci_high"] - v for n, v in zip(names, means)],
    ]
    ax.barh(names, means, xerr=errors, capsize=4, color="#4c72b0")
    ax.set_xlim(0, 7)
    ax.invert_yaxis()
    ax.set_xlabel("mean score (0-7), 95% interval")
    lines.append(_save(fig, folder / "mean_scores.png", "Mean score per model"))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    distribution = score_distribution(analysis)
    width = 0.8 / max(len(distribution), 1)
    for k, (model, counts) in enumerate(distribution.items()):
        ax.bar([s + k * width for s in SCALE], [counts[s] for s in SCALE], width=width, label=model)
    ax.set_xticks([s + 0.4 - width / 2 for s in SCALE], [str(s) for s in SCALE])
    ax.set_xlabel("score")
    ax.set_ylabel("scores given")
    ax.legend()
    lines.append(_save(fig, folder / "score_distribution.png", "Score distribution per model"))

    if m["pairwise"]:
        pairs = list(m["pairwise"])
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(pairs)))
        left = [0.0] * len(pairs)
        for outcome, color in (("win", "#55a868"), ("tie", "#c0c0c0"), ("loss", "#c44e52")):
            values = [m["pairwise"][p][outcome] or 0.0 for p in pairs]
            ax.barh([p.replace("_vs_", " vs ") for p in pairs], values, left=left, color=color, label=outcome)
            left = [a + b for a, b in zip(left, values)]
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("share of tasks (first model's win / tie / loss)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45 if len(pairs) < 3 else -0.25), ncol=3, frameon=False)
        lines.append(_save(fig, folder / "win_rates.png", "Win, tie and loss rates"))
    return lines


def _save(fig, path: Path, title: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return f"![{title}]({path.name})"


def _lowest(analysis: Analysis, tasks: pa.Table, generations: pa.Table, limit: int) -> str:
    lines = ["# Lowest-rated answers", ""]
    scores = analysis.scores
    if scores.empty or limit == 0:
        return "\n".join(lines + ["No submitted scores yet.", ""])
    instructions = dict(zip(tasks.column("task_id").to_pylist(), tasks.column("instruction").to_pylist()))
    answers = {
        (t, m): r for t, m, r in zip(*(generations.column(c).to_pylist() for c in ("task_id", "model", "response")))
    }
    comments = (
        analysis.submitted.dropna(subset=["comments"])
        .drop_duplicates(["record_id", "annotator"])
        .groupby("task_id")["comments"]
        .apply(list)
    )
    worst = scores.sort_values(["score", "task_id", "model"]).head(limit)
    for rank, row in enumerate(worst.itertuples(), 1):
        lines += [
            f"## {rank}. {row.model} on task {row.task_id}: {row.score:.2f} ({row.n} scores)",
            "",
            "**Instruction**",
            "",
            _quote(instructions.get(row.task_id, "(not in the tasks artifact)")),
            "",
            "**Answer**",
            "",
            _fenced(answers.get((row.task_id, row.model)) or ""),
            "",
        ]
        notes = comments.get(row.task_id, []) if isinstance(comments, pd.Series) else []
        if notes:
            lines += ["**Comments**", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _fenced(text: str) -> str:
    """The answer verbatim (cut to RESPONSE_LINES lines) in a fence longer than any it contains."""
    lines = text.splitlines()
    shown = "\n".join(lines[:RESPONSE_LINES]) + (
        f"\n... ({len(lines) - RESPONSE_LINES} more lines)" if len(lines) > RESPONSE_LINES else ""
    )
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{shown}\n{fence}"
