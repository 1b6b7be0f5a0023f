#!/usr/bin/env python3
"""Draws one PNG per trace from bench_governor's CSVs (--out DIR): committed memory over time
for every policy against the machine, and goodput / SLO attainment per policy.

    plot_governor.py DIR [--machine-gib G]

Needs matplotlib (python3-matplotlib; tools/bench/governor_bench.sh installs it).
"""
import argparse
import csv
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"sparkd": "tab:green", "static": "tab:blue", "count-lru": "tab:orange",
          "no-governor": "tab:gray"}


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot(directory, trace, machine_gib):
    memory = read_rows(directory / f"{trace}-memory.csv")
    summary = read_rows(directory / f"{trace}-summary.csv")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), height_ratios=[3, 2])
    host = {}
    for policy in [row["policy"] for row in summary]:
        rows = [r for r in memory if r["policy"] == policy]
        t = [float(r["t_s"]) for r in rows]
        committed = [float(r["committed_gib"]) + float(r["host_gib"]) for r in rows]
        host = {float(r["t_s"]): float(r["host_gib"]) for r in rows} or host
        top.plot(t, committed, label=f"{policy} + host", color=COLORS.get(policy))
    if host:
        times = sorted(host)
        top.plot(times, [host[x] for x in times], label="host (OS + other processes)",
                 color="black", linestyle=":")
    if machine_gib:
        top.axhline(machine_gib, color="red", linestyle="--", label="MemTotal")
    top.set_xlabel("simulated time (s)")
    top.set_ylabel("GiB committed")
    top.set_title(f"{trace}: memory committed (a line above MemTotal is an OOM)")
    top.legend(loc="lower right", fontsize=8)
    policies = [row["policy"] for row in summary]
    x = range(len(policies))
    slo = [100 * float(row["slo_attainment"]) for row in summary]
    goodput = [float(row["goodput_rps"]) for row in summary]
    bars = bottom.bar(x, slo, color=[COLORS.get(p) for p in policies])
    for bar, g, row in zip(bars, goodput, summary):
        oom = int(row["oom_events"])
        bottom.annotate(f"{g:.3f} req/s" + (f"\n{oom} OOM" if oom else ""),
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    bottom.set_xticks(list(x), policies)
    bottom.set_ylabel("SLO attainment (%)")
    bottom.set_ylim(0, 115)
    fig.tight_layout()
    out = directory / f"{trace}.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=pathlib.Path)
    parser.add_argument("--machine-gib", type=float, default=0)
    args = parser.parse_args()
    traces = sorted(p.name[: -len("-summary.csv")] for p in args.directory.glob("*-summary.csv"))
    if not traces:
        sys.exit(f"plot_governor: no *-summary.csv under {args.directory}")
    for trace in traces:
        print(plot(args.directory, trace, args.machine_gib))


if __name__ == "__main__":
    main()
