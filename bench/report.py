#!/usr/bin/env python3
"""Markdown tables from af-bench's JSON lines (for docs/benchmarks.md).

    python3 bench/report.py [bench/results/latest.jsonl]

Prints the headline table (the issue's figures, one column per mode) and
the full table of every figure; a figure taken while other processes used
more CPU than the threshold is marked with *.
"""
import json
import sys

MODES = ["embedded", "embedded-fullsync", "distributed"]

HEADLINE = [
    ("rtt", "p50", "raw agent round trip p50 (keep-alive, no engine)"),
    ("chain10", "latency_p50", "chain10 latency p50 (50 runs, one at a time)"),
    ("chain10", "latency_p99", "chain10 latency p99 (= the slowest of 50)"),
    ("chain10", "rtt_alongside_p50", "raw agent round trip p50 between the 50 runs (10 before each)"),
    ("chain10", "overhead_per_step_p50", "overhead per step = (p50 - 10 x rtt between the runs) / 10"),
    ("chain10", "throughput_runs_per_s", "chain10 throughput (1,000 runs, 64 in flight)"),
    ("chain10", "throughput_steps_per_s", "chain10 steps/s"),
    ("fanout40", "latency_p50", "fanout40 latency p50 (20 runs)"),
    ("trigger", "accepted_per_s", "trigger: runs accepted/s (64 connections, no consumer)"),
    ("trigger", "latency_p50", "trigger latency p50"),
    ("trigger", "latency_p99", "trigger latency p99"),
    ("slow", "time_to_all_completed", "slow-agents: 10,000 runs x 2 s step, time to all COMPLETED"),
    ("slow", "executor_peak_rss", "slow-agents: executor peak RSS (VmHWM)"),
    ("slow", "executor_max_threads", "slow-agents: executor threads (max sampled)"),
    ("slow_max_runs_10000", "time_to_all_completed", "slow-agents, consumer --max-runs 10000: time"),
    ("slow_max_runs_10000", "executor_peak_rss", "slow-agents, consumer --max-runs 10000: peak RSS"),
    ("disk", "fdatasync_8k_p50", "disk: fdatasync of an 8 KiB append, p50"),
]


def fmt(v, disturbed):
    if v is None:
        return "-"
    s = f"{v:,.0f}" if abs(v) >= 1000 else (f"{v:.3g}" if abs(v) >= 1 else f"{v:.3f}")
    return s + ("*" if disturbed else "")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.jsonl"
    figs = [json.loads(line) for line in open(path) if line.strip()]
    cell = {}
    units = {}
    order = []
    for f in figs:
        key = (f["bench"], f["metric"])
        if key not in order:
            order.append(key)
        units[key] = f["unit"]
        cell[(f["bench"], f["metric"], f["mode"])] = fmt(f["value"], f.get("disturbed", False))
    modes = [m for m in MODES if any(f["mode"] == m for f in figs)]
    print("| figure | " + " | ".join(modes) + " | unit |")
    print("|---|" + "---|" * len(modes) + "---|")
    for b, m, label in HEADLINE:
        if (b, m) not in units:
            continue
        print(f"| {label} | " + " | ".join(cell.get((b, m, mode), "-") for mode in modes) + f" | {units[(b, m)]} |")
    print()
    print("| bench | metric | " + " | ".join(modes) + " | unit |")
    print("|---|---|" + "---|" * len(modes) + "---|")
    for b, m in order:
        print(f"| {b} | {m} | " + " | ".join(cell.get((b, m, mode), "-") for mode in modes) + f" | {units[(b, m)]} |")
    if figs:
        print()
        print(f"machine: {figs[0]['machine']}" + (f"; revision {figs[0]['revision']}" if "revision" in figs[0] else ""))


if __name__ == "__main__":
    main()
