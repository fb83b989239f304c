"""What analyze shows people: `reports/report.md` with PNG charts (readable on any Markdown viewer, without DVC),
`reports/lowest.md` for error analysis, `reports/disagreements.md` for adjudication."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa

from llm_feedback.analysis import Analysis
from llm_feedback.annotation.values import STATUSES
from llm_feedback.artifacts import atomic_folder, atomic_path
from llm_feedback.report_charts import write_charts

RESPONSE_LINES = 40  # of each answer in lowest.md


def write_metrics(metrics: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_reports(
    analysis: Analysis,
    folder: Path,
    *,
    tasks: pa.Table,
    generations: pa.Table,
    lowest: int,
    how_to_annotate: str,
    disagreements: str | None = None,
) -> None:
    """reports/report.md (+ PNG charts), reports/lowest.md and, when given, reports/disagreements.md (the page
    disagreements.py writes), replaced together."""
    with atomic_folder(folder) as staging:
        charts = write_charts(analysis, staging) if analysis.metrics["counts"]["scored_tasks"] else {}
        report = _report(analysis, charts, how_to_annotate)
        if disagreements is not None:
            (staging / "disagreements.md").write_text(disagreements, encoding="utf-8")
            report += "\nWhere annotators disagree, to settle with them: [disagreements.md](disagreements.md).\n"
        (staging / "report.md").write_text(report, encoding="utf-8")
        (staging / "lowest.md").write_text(_lowest(analysis, tasks, generations, lowest), encoding="utf-8")


def _fmt(value: float | None, digits: int = 2, sign: str = "") -> str:
    return "n/a" if value is None else f"{value:{sign}.{digits}f}"


def _span(low: float | None, high: float | None, digits: int = 2, sign: str = "") -> str:
    return "n/a" if low is None else f"{_fmt(low, digits, sign)} to {_fmt(high, digits, sign)}"


def _assisted(assisted: dict | None) -> list[str]:
    """The differences again with the judge's help (prediction-powered), beside the humans alone."""
    if not assisted:
        return []
    lines = [
        "",
        "## With the judge's help (prediction-powered inference)",
        "",
        f"The judge's scores on {assisted['judge_tasks']} tasks, corrected by the humans' on "
        f"{assisted['human_tasks']}. "
        f"Correlation of judge and humans: {_fmt(assisted['correlation']['answers'], 2)} per answer. Effective human "
        "tasks: how many the humans alone would need for the same width.",
        "",
        "| pair | difference | 95% interval | humans alone | judge-human correlation of differences "
        "| effective human tasks |",
        "|---|---|---|---|---|---|",
    ]
    for pair, v in assisted["pairwise"].items():
        human = v["human_only"]
        lines.append(
            f"| {pair.replace('_vs_', ' - ')} | {_fmt(v['difference'], sign='+')} "
            f"| {_span(v['ci_low'], v['ci_high'], sign='+')} "
            f"| {_fmt(human['difference'], sign='+')} ({_span(human['ci_low'], human['ci_high'], sign='+')}) "
            f"| {_fmt(assisted['correlation']['differences'][pair], 2)} | {_fmt(v['effective_human_tasks'], 0)} |"
        )
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _p(value: float | None) -> str:
    return "n/a" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _report(analysis: Analysis, charts: dict[str, str], how_to_annotate: str) -> str:
    m = analysis.metrics
    counts = m["counts"]
    lines = ["# Which model answers better", "", f"**{m['verdict']}**", ""]
    lines += [f"- {caveat}" for caveat in analysis.caveats()]
    responses = counts["responses"]
    summary = [
        f"{counts['scored_tasks']} of {counts['tasks']} tasks scored, {counts['complete_tasks']} by every model",
        f"{counts['annotated_records']} of {counts['records']} records annotated",
        "responses: " + ", ".join(f"{responses[s]} {s}" for s in STATUSES),
    ]
    if counts["stale_scores"]:
        summary.append(f"{counts['stale_scores']} scores of answers since regenerated left out")
    if counts["duplicate_responses"]:
        summary.append(f"{counts['duplicate_responses']} repeated responses of one annotator counted once")
    lines += ["", "; ".join(summary) + ".", ""]
    if not counts["scored_tasks"]:
        lines += ["**No submitted scores yet.** " + how_to_annotate, ""]
        return "\n".join(lines)
    lines += _differences(m, charts)
    lines += _means(analysis, charts)
    lines += _head_to_head(m, charts)
    lines += _ratings(m)
    lines += _preference(m)
    lines += _biases(m)
    lines += _agreement(m, charts)
    lines += _extras(m)
    lines += ["", "The lowest-rated answers, with their instruction and comments: [lowest.md](lowest.md).", ""]
    return "\n".join(lines)


def _differences(m: dict, charts: dict[str, str]) -> list[str]:
    pairs = [(p, v) for p, v in m["pairwise"].items() if v["difference"] is not None]
    if not pairs:
        return []
    lines = [
        "## Paired differences (first model minus second, on the same tasks)",
        "",
        "The interval is a BCa bootstrap over tasks; p is a sign-flip permutation test, Holm-adjusted across pairs. "
        "Style-controlled: the same difference at equal answer length, code blocks and Markdown.",
        "",
        "| pair | difference | 95% interval | p (Holm) | decided | style-controlled | tasks | tasks for 80% power |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair, v in pairs:
        styled = v["style_controlled"]
        lines.append(
            f"| {pair.replace('_vs_', ' - ')} | {_fmt(v['difference'], sign='+')} "
            f"| {_span(v['ci_low'], v['ci_high'], sign='+')} | {_p(v['p_holm'])} | {'yes' if v['decided'] else 'no'} "
            f"| {_fmt(styled['difference'], sign='+')} ({_span(styled['ci_low'], styled['ci_high'], sign='+')}) "
            f"| {v['tasks']} | {v['tasks_for_power'] if v['tasks_for_power'] is not None else 'n/a'} |"
        )
    return [*lines, "", charts.get("differences", ""), ""]


def _means(analysis: Analysis, charts: dict[str, str]) -> list[str]:
    lines = [
        f"## Mean score ({analysis.scale.start}-{analysis.scale.stop - 1}) on the same tasks, with 95% BCa interval",
        "",
        "Position-corrected: the mean had every model been shown equally often in every position.",
        "",
        "| model | mean | interval | position-corrected | tasks | scores |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {_fmt(v['mean'])} | {_span(v['ci_low'], v['ci_high'])} | {_fmt(v['position_corrected'])} "
        f"| {v['tasks']} | {v['scores']} |"
        for name, v in analysis.ranking()
    ]
    return [*lines, "", charts.get("means", ""), charts.get("distribution", ""), ""]


def _head_to_head(m: dict, charts: dict[str, str]) -> list[str]:
    if not m["pairwise"]:
        return []
    lines = [
        "## Head to head (95% Wilson intervals)",
        "",
        "Decisive share: wins / (wins + losses), the figure to compare with 50%.",
        "",
        "| pair | win | tie | loss | decisive share | tasks |",
        "|---|---|---|---|---|---|",
    ]
    for pair, v in m["pairwise"].items():
        cells = [
            f"{_pct(v[o])} ({_pct(v[f'{o}_ci_low'])} to {_pct(v[f'{o}_ci_high'])})"
            for o in ("win", "tie", "loss", "decisive")
        ]
        lines.append(f"| {pair.replace('_vs_', ' vs ')} | {' | '.join(cells)} | {v['tasks']} |")
    return [*lines, "", charts.get("win_rates", ""), ""]


def _ratings(m: dict) -> list[str]:
    if not m["bradley_terry"]:
        return []
    styled = m["bradley_terry_style_controlled"] or {}
    lines = [
        "## Bradley-Terry ratings (Elo scale, ties count half)",
        "",
        "| model | rating | interval | style-controlled | interval |",
        "|---|---|---|---|---|",
    ]
    for name, v in sorted(m["bradley_terry"].items(), key=lambda kv: -(kv[1]["rating"] or -1e9)):
        s = styled.get(name, {"rating": None, "ci_low": None, "ci_high": None})
        lines.append(
            f"| {name} | {_fmt(v['rating'], 0)} | {_span(v['ci_low'], v['ci_high'], 0)} "
            f"| {_fmt(s['rating'], 0)} | {_span(s['ci_low'], s['ci_high'], 0)} |"
        )
    return [*lines, ""]


def _preference(m: dict) -> list[str]:
    found = m.get("preference")
    if not found:
        return []
    lines = [
        "## Which response is better? (annotators' direct preference)",
        "",
        f"{found['responses']} responses on {found['tasks']} tasks. A response naming one answer says it beat every "
        "other on the record; intervals: Wilson for the rates, a bootstrap over tasks for the ratings.",
        "",
        "| pair | first wins | ties | second wins | decisive share won by the first | comparisons |",
        "|---|---|---|---|---|---|",
    ]
    for pair, v in found["pairwise"].items():
        cells = [
            f"{_pct(v[k]['rate'])} ({_pct(v[k]['ci_low'])} to {_pct(v[k]['ci_high'])})"
            for k in ("win", "tie", "loss", "decisive")
        ]
        lines.append(f"| {pair.replace('_vs_', ' vs ')} | {' | '.join(cells)} | {v['comparisons']} |")
    lines += ["", "| model | Bradley-Terry rating (Elo scale, ties count half) | interval |", "|---|---|---|"]
    for name, v in sorted(found["bradley_terry"].items(), key=lambda kv: -(kv[1]["rating"] or -1e9)):
        lines.append(f"| {name} | {_fmt(v['rating'], 0)} | {_span(v['ci_low'], v['ci_high'], 0)} |")
    return [*lines, ""]


def _biases(m: dict) -> list[str]:
    lines = [
        "## Position (does Response 1 get more?)",
        "",
        "Effect: the change in score from being shown at that position instead of first, estimated within tasks, "
        "models and annotators (95% interval clustered by task). The raw mean is confounded with which model was "
        "shown there.",
        "",
        "| position | effect | interval | raw mean score | scores |",
        "|---|---|---|---|---|",
    ]
    raw = m["position"]["mean_score"]
    for p, effect in m["position"]["effect"].items():
        r = raw.get(p, {"mean_score": None, "scores": 0})
        lines.append(
            f"| {p} | {_fmt(effect['value'], sign='+')} | {_span(effect['ci_low'], effect['ci_high'], sign='+')} "
            f"| {_fmt(r['mean_score'])} | {r['scores']} |"
        )
    lines += [
        "",
        "## Annotators",
        "",
        "Leniency: offset from the average annotator on the same answers. Agreement: Spearman correlation with the "
        "other annotators' mean score on shared answers; flagged random when credibly below 0.3 (the whole interval "
        "under it), adversarial when credibly below 0. `analyze.exclude_annotators` leaves annotators out.",
        "",
        "| annotator | records | mean score given | leniency | interval | agreement | interval | flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a, v in m["annotators"].items():
        lines.append(
            f"| {a} | {v['records']} | {_fmt(v['mean_score'])} | {_fmt(v['leniency'], sign='+')} "
            f"| {_span(v['leniency_ci_low'], v['leniency_ci_high'], sign='+')} | {_fmt(v['agreement'])} "
            f"| {_span(v['agreement_ci_low'], v['agreement_ci_high'])} | {v['flagged'] or ''} |"
        )
    return [*lines, ""]


def _agreement(m: dict, charts: dict[str, str]) -> list[str]:
    lines = [
        "## Agreement between annotators (Krippendorff's alpha, ordinal)",
        "",
        "| question | alpha | records rated by 2+ |",
        "|---|---|---|",
    ]
    lines += [f"| {q} | {_fmt(v['alpha'], 3)} | {v['records']} |" for q, v in m["agreement"].items()]
    corrections = m["corrections"]
    return [
        *lines,
        "",
        "## Corrections",
        "",
        f"{corrections['corrected_responses']} corrected responses written. "
        "Chosen for correction: " + ", ".join(f"{k} {v}" for k, v in corrections["to_correct"].items()) + ".",
    ]


def _extras(m: dict) -> list[str]:
    lines = []
    if m["judge"]:
        j = m["judge"]
        lines += [
            "",
            "## Judge vs humans",
            "",
            f"Spearman {_fmt(j['spearman'], 3)}, quadratic-weighted kappa "
            f"{_fmt(j['kappa_quadratic'], 3)} over {j['pairs']} answers scored by both.",
        ]
        lines += _assisted(j["assisted"])
    if m["execution"]:
        e = m["execution"]
        lines += ["", "## Execution", "", "| model | pass rate | runs |", "|---|---|---|"]
        lines += [f"| {name} | {_pct(v['pass_rate'])} | {v['runs']} |" for name, v in e["models"].items()]
        lines += [
            "",
            f"Correlation of passing with the human score: {_fmt(e['correlation_with_human'], 3)} "
            f"({e['pairs']} answers).",
        ]
    return lines


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
