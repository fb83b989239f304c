"""Benchmark: analyze at scale: 50k tasks x 2 models x 3 annotators, 1,000 bootstrap resamples.

Inputs are the synthetic annotations the tests use too (`llm_feedback.testing.synthetic_annotations`: known model
qualities and annotator biases), 300k annotation rows.

Variants, each in a fresh subprocess so memory peaks do not mix:
- `analyze`: the analyze stage's whole computation (`llm_feedback.analysis.analyze`): stale-score check,
  aggregation, bootstrap intervals for means and win/tie/loss rates, Krippendorff's alpha, per-annotator and
  per-position tables. Its bootstrap is one pass of matrix products over blocks of resample counts.
- `bootstrap-vectorised`: only the bootstrap part of the above (means and win/tie/loss rates with intervals).
- `bootstrap-loop`: the baseline: the same statistics with a Python loop over resamples, each drawing task indices
  and computing the means and rates with numpy, as one would write it in a notebook.

Each child reports wall time and peak memory above what it held once the data was loaded (`ru_maxrss`). The parent
checks that both bootstraps give the same intervals (to within resampling noise) and prints the ratio. The issue's
targets, at least 20x faster than the loop and under 1 GB, end the output as PASS/FAIL lines.

Run from the project root (about 1 minute):

    .venv/bin/python bench/analyze.py [--tasks 50000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True

MODELS = {"model-a": 4.6, "model-b": 4.2}
ANNOTATORS = {"ann-1": -0.5, "ann-2": 0.0, "ann-3": 0.5}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant: str, tasks: int, resamples: int) -> dict:
    import numpy as np

    from llm_feedback.analysis import _Bootstrap, aggregate_scores, analyze, current_scores
    from llm_feedback.params import AnalyzeParams
    from llm_feedback.testing.synthetic_annotations import annotations_for, generations_for

    ids = [f"{i:016x}" for i in range(tasks)]
    annotations = annotations_for(ids, MODELS, ANNOTATORS)
    generations = generations_for(ids, list(MODELS))
    params = AnalyzeParams(bootstrap=resamples, seed=0)
    models = list(MODELS)
    if variant != "analyze":
        submitted, _ = current_scores(annotations.to_pandas(), generations)
        scores = aggregate_scores(submitted, "mean")
        matrix = scores.pivot(index="task_id", columns="model", values="score").reindex(columns=models).to_numpy()
    before = rss_mb()
    began = time.perf_counter()
    if variant == "analyze":
        metrics = analyze(annotations=annotations, generations=generations, compare=models, params=params).metrics
        means = {m: [metrics["models"][m]["ci_low"], metrics["models"][m]["ci_high"]] for m in models}
        win = [metrics["pairwise"]["model-a_vs_model-b"][k] for k in ("win_ci_low", "win_ci_high")]
    elif variant == "bootstrap-vectorised":
        sums = _Bootstrap.run(matrix, params)
        intervals = sums.means()
        means = {m: [intervals[k].low, intervals[k].high] for k, m in enumerate(models)}
        _, samples = sums.pair_counts()
        rates = samples[:, 0, 0] / samples[:, 0, :].sum(axis=1)
        win = np.percentile(rates, [2.5, 97.5]).tolist()
    else:
        means, win = loop_bootstrap(matrix, models, resamples)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "peak_mb": rss_mb() - before, "means": means, "win": win}


def loop_bootstrap(matrix, models: list[str], resamples: int):
    """The baseline: one resample at a time."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = matrix.shape[0]
    mean_samples, win_samples = [], []
    for _ in range(resamples):
        sample = matrix[rng.integers(0, n, n)]
        mean_samples.append(np.nanmean(sample, axis=0))
        a, b = sample[:, 0], sample[:, 1]
        valid = np.isfinite(a) & np.isfinite(b)
        win_samples.append(np.mean(a[valid] > b[valid]))
        np.mean(a[valid] == b[valid]), np.mean(a[valid] < b[valid])  # tie and loss, as analyze computes them too
    mean_samples = np.array(mean_samples)
    means = {m: np.percentile(mean_samples[:, k], [2.5, 97.5]).tolist() for k, m in enumerate(models)}
    return means, np.percentile(win_samples, [2.5, 97.5]).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(child(args.variant, args.tasks, args.resamples)))
        return

    results = {}
    for variant in ("analyze", "bootstrap-vectorised", "bootstrap-loop"):
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--tasks",
                str(args.tasks),
                "--resamples",
                str(args.resamples),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[variant] = json.loads(output.stdout.strip().splitlines()[-1])
    fast, slow = results["bootstrap-vectorised"], results["bootstrap-loop"]
    for m in MODELS:
        assert max(abs(x - y) for x, y in zip(fast["means"][m], slow["means"][m])) < 0.01, (
            fast["means"],
            slow["means"],
        )
    assert max(abs(x - y) for x, y in zip(fast["win"], slow["win"])) < 0.01, (fast["win"], slow["win"])

    rows = len(MODELS) * len(ANNOTATORS) * args.tasks
    print(
        f"{args.tasks} tasks x {len(MODELS)} models x {len(ANNOTATORS)} annotators ({rows} rows), "
        f"{args.resamples} resamples"
    )
    for name, result in results.items():
        print(f"  {name:22s} {result['seconds']:7.2f} s   peak +{result['peak_mb']:6.0f} MB")
    ratio = slow["seconds"] / fast["seconds"]
    print(f"  bootstrap: vectorised is {ratio:.1f}x faster than the loop; intervals agree within 0.01")
    checks = [
        ("bootstrap >= 20x faster than the per-resample loop", ratio >= 20),
        ("whole analyze under 1 GB above its inputs", results["analyze"]["peak_mb"] < 1024),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    sys.exit(0 if all(ok for _, ok in checks) else 1)


if __name__ == "__main__":
    main()
