"""Triage accuracy and speed (issue 13): the report corpus of tests/core/triage_corpus.yaml.

    .venv/bin/python -m bench.triage

Figures, each `name = value unit`: per expected level and overall, the share of reports classified
at that level, on the tuned corpus (`triage_accuracy_*`) and on the held-out reports the rules were
never tuned on (`triage_heldout_accuracy_*`); the number of reports; the median time to classify
one report (microseconds, the vocabulary already compiled).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "core" / "triage_corpus.yaml"
LEVELS = ("P1", "P2", "P3", "P4")


def load_corpus(path: Path = CORPUS) -> dict[str, list[dict[str, Any]]]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {"tuned": data["tuned"], "held_out": data["held_out"]}


def accuracy(runbook: Any, reports: list[dict[str, Any]]) -> tuple[dict[str, float], float, list[tuple[dict[str, Any], Any]]]:
    """(share right per expected level, share right overall, the misses with their results)."""
    from incident_ops.core.triage import classify

    right = dict.fromkeys(LEVELS, 0)
    total = dict.fromkeys(LEVELS, 0)
    misses = []
    for report in reports:
        result = classify(runbook, report["text"])
        total[report["level"]] += 1
        if result.severity == report["level"]:
            right[report["level"]] += 1
        else:
            misses.append((report, result))
    per_level = {level: right[level] / total[level] for level in LEVELS if total[level]}
    return per_level, sum(right.values()) / max(1, sum(total.values())), misses


def bench_triage(rounds: int = 20) -> None:
    """Accuracy per level on the tuned corpus and the held-out set, and the classification time."""
    for extra in (ROOT, ROOT / "plugins"):
        if str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    from bench.run import figure, note
    from incident_ops.core.runbook import load_runbook
    from incident_ops.core.triage import classify

    runbook = load_runbook()
    corpus = load_corpus()
    for name, prefix in (("tuned", "triage_accuracy"), ("held_out", "triage_heldout_accuracy")):
        reports = corpus[name]
        per_level, overall, misses = accuracy(runbook, reports)
        for level in LEVELS:
            if level in per_level:
                figure(f"{prefix}_{level}", per_level[level])
        figure(prefix, overall)
        figure(f"{prefix}_reports", len(reports), "reports")
        if misses and name == "tuned":
            for report, result in misses:
                note(f"tuned miss: {report['text']!r} expected {report['level']}, got {result.severity}: {result.rule}")
        elif misses:
            note(f"held-out misses: {len(misses)} (not listed: the rules are not tuned on them)")

    texts = [report["text"] for reports in corpus.values() for report in reports]
    classify(runbook, texts[0])  # the vocabulary is compiled once per runbook
    timings: list[float] = []
    for text in texts:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            classify(runbook, text)
            samples.append(time.perf_counter_ns() - start)
        timings.append(statistics.median(samples) / 1000)
    figure("triage_classify_median", statistics.median(timings), "us")
    figure("triage_classify_max", max(timings), "us")


if __name__ == "__main__":
    bench_triage()
