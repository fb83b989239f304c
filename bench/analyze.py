"""Benchmark: analyze at scale: 50k tasks x 3 models x 3 annotators, 1,000 bootstrap resamples, against the analyze
of commit 90ccbe2 (before the verdict: per-model intervals only) in the same run.

Inputs: one simulated study (`llm_feedback.testing.simulated_study`: task effects, three annotators of different
leniency, noise sd 1.5, shuffled display order), 450k annotation rows and 150k answers, written once as the
annotations and generations parquet files that pull and generate write.

Variants, each in a fresh subprocess reading the same files, so memory peaks do not mix:
- `now`: this tree's `llm_feedback.analysis.analyze` with `analyze.bootstrap: 1000` and the other defaults (10,000
  sign flips): the verdict (paired differences with BCa intervals, sign-flip tests, Holm, Wilson rates), Bradley-Terry
  raw and style-controlled, the position and annotator regression, annotator agreement, Krippendorff's alpha.
- `90ccbe2`: the analyze of that commit, from a git worktree at /tmp/analyze-baseline (added for the run if absent,
  and removed after), on PYTHONPATH ahead of this tree.
Each child reports the wall time of the `analyze(...)` call alone and the peak RSS during it: VmHWM, reset just
before the call (`ru_maxrss` would carry the parent's peak across fork and exec), absolute and above what the process
held with its inputs loaded. The parent checks that both found the same model means, and prints the targets, under
10 s and under 1 GB of peak RSS, as PASS/FAIL lines.

Run from the project root (about a minute):

    .venv/bin/python -m bench.analyze [--tasks 50000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "90ccbe2"
WORKTREE = Path("/tmp/analyze-baseline")
MODELS = {"model-a": 4.2, "model-b": 4.0, "model-c": 3.6}
SECONDS, MIB = 10.0, 1024.0  # the targets


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def child(folder: Path, resamples: int) -> dict:
    """Run whichever llm_feedback.analysis is first on the path, on the inputs in `folder`."""
    import pyarrow.parquet as pq

    import llm_feedback
    from llm_feedback.analysis import analyze
    from llm_feedback.params import AnalyzeParams

    annotations = pq.read_table(folder / "annotations.parquet")
    generations = pq.read_table(folder / "generations.parquet")
    params = AnalyzeParams(bootstrap=resamples, seed=0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM restarts from the current RSS
    before = status_mib("VmRSS")
    began = time.perf_counter()
    metrics = analyze(annotations=annotations, generations=generations, compare=list(MODELS), params=params).metrics
    seconds = time.perf_counter() - began
    peak = status_mib("VmHWM")
    return {
        "source": str(Path(llm_feedback.__file__).parent),
        "seconds": seconds,
        "peak_mib": peak,
        "above_inputs_mib": peak - before,
        "means": {m: metrics["models"][m]["mean"] for m in MODELS},
        "verdict": metrics.get("verdict"),
    }


def write_inputs(folder: Path, tasks: int) -> int:
    import pyarrow.parquet as pq

    from llm_feedback.testing.simulated_study import Annotator, Population, simulate

    population = Population(
        tasks=tasks,
        means=MODELS,
        annotators={
            "ann-1": Annotator(leniency=-0.5, noise=1.5),
            "ann-2": Annotator(noise=1.5),
            "ann-3": Annotator(leniency=0.5, noise=1.5),
        },
    )
    study = simulate(population)
    pq.write_table(study.annotations, folder / "annotations.parquet")
    pq.write_table(study.generations, folder / "generations.parquet")
    return study.annotations.num_rows


def baseline_tree() -> bool:
    """A worktree of the baseline commit at WORKTREE; True if this run added it (and so removes it)."""
    if (WORKTREE / "src" / "llm_feedback" / "analysis.py").exists():
        head = git(WORKTREE, "rev-parse", "HEAD")
        if head.returncode == 0 and head.stdout == git(ROOT, "rev-parse", BASELINE).stdout:
            return False
        raise SystemExit(f"{WORKTREE} holds something other than {BASELINE}: remove it first")
    git(ROOT, "worktree", "add", "--detach", str(WORKTREE), BASELINE).check_returncode()
    return True


def git(folder: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *arguments], check=False, capture_output=True, text=True)


def spawn(variant: str, folder: Path, resamples: int) -> dict:
    env = dict(os.environ)
    if variant == BASELINE:
        env["PYTHONPATH"] = os.pathsep.join([str(WORKTREE / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    output = subprocess.run(
        [sys.executable, "-m", "bench.analyze", "--child", str(folder), "--resamples", str(resamples)],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if output.returncode:
        raise SystemExit(f"{variant} failed:\n{output.stderr}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.resamples)))
        return

    added = baseline_tree()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = write_inputs(Path(tmp), args.tasks)
            results = {variant: spawn(variant, Path(tmp), args.resamples) for variant in ("now", BASELINE)}
    finally:
        if added:
            git(ROOT, "worktree", "remove", "--force", str(WORKTREE)).check_returncode()
    now, before = results["now"], results[BASELINE]
    assert before["source"].startswith(str(WORKTREE)) and now["source"].startswith(str(ROOT)), results
    for m in MODELS:
        assert abs(now["means"][m] - before["means"][m]) < 1e-3, (now["means"], before["means"])

    print(
        f"{args.tasks} tasks x {len(MODELS)} models x 3 annotators ({rows} rows), {args.resamples} resamples; "
        "both found the same model means"
    )
    print(f"  {'variant':10} {'analyze()':>10} {'peak RSS':>10} {'above inputs':>13}")
    for name, r in results.items():
        print(f"  {name:10} {r['seconds']:8.2f} s {r['peak_mib']:7.0f} MiB {r['above_inputs_mib']:9.0f} MiB")
    print(f"  verdict: {now['verdict']}")
    print(f"  now / {BASELINE}: {now['seconds'] / before['seconds']:.1f}x the time")
    checks = [
        (f"analyze under {SECONDS:g} s ({now['seconds']:.1f} s)", now["seconds"] < SECONDS),
        (f"analyze's peak RSS under 1 GB ({now['peak_mib']:.0f} MiB)", now["peak_mib"] < MIB),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    sys.exit(0 if all(ok for _, ok in checks) else 1)


if __name__ == "__main__":
    main()
