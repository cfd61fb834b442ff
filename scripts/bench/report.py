#!/usr/bin/env python3
"""Turns the raw measurements of scripts/bench.sh into the Markdown results tables.

Input: a TSV file of `round scenario target metric value` lines. Every figure printed is the
median over rounds; the ratio to direct is computed within each round first (proxy and direct
ran back to back, under the same background load) and then its median is taken.
"""
import statistics
import sys
from collections import defaultdict

TARGETS = ["direct", "pgbouncer", "pgpool2", "pgpool-rs"]


def load(path):
    data = defaultdict(dict)  # (scenario, target, metric) -> {round: value}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5:
                continue
            rnd, scenario, target, metric, value = parts
            try:
                data[(scenario, target, metric)][rnd] = float(value)
            except ValueError:
                pass
    return data


def median(data, scenario, target, metric):
    values = list(data.get((scenario, target, metric), {}).values())
    return statistics.median(values) if values else None


def ratio(data, scenario, target, metric):
    mine = data.get((scenario, target, metric), {})
    direct = data.get((scenario, "direct", metric), {})
    values = [mine[r] / direct[r] for r in mine if direct.get(r)]
    return statistics.median(values) if values else None


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def scenarios_of(data, metric):
    seen = []
    for scenario, _, m in data:
        if m == metric and scenario not in seen:
            seen.append(scenario)
    return seen


def pgbench_table(data, labels):
    rows = ["| scenario | target | TPS | ratio to direct | p50 ms | p99 ms | proxy CPU µs/tx |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for scenario in scenarios_of(data, "tps"):
        for target in TARGETS:
            tps = median(data, scenario, target, "tps")
            if tps is None:
                continue
            rows.append("| {} | {} | {} | {} | {} | {} | {} |".format(
                labels.get(scenario, scenario), target, fmt(tps, ".0f"),
                fmt(ratio(data, scenario, target, "tps"), ".2f"),
                fmt(median(data, scenario, target, "p50_ms"), ".3f"),
                fmt(median(data, scenario, target, "p99_ms"), ".3f"),
                fmt(median(data, scenario, target, "cpu_us_per_tx"), ".0f")))
    return rows


def idle_table(data):
    rows = ["| target | idle clients held | proxy KiB per idle client | "
            "fresh connect+auth+SELECT 1 p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|"]
    for target in TARGETS:
        held = median(data, "idle", target, "held")
        if held is None:
            continue
        rows.append("| {} | {} | {} | {} | {} |".format(
            target, fmt(held, ".0f"), fmt(median(data, "idle", target, "kib_per_client"), ".1f"),
            fmt(median(data, "idle", target, "fresh_p50_ms"), ".2f"),
            fmt(median(data, "idle", target, "fresh_p99_ms"), ".2f")))
    return rows


def copy_table(data):
    rows = ["| target | COPY TO STDOUT s | MB/s | ratio to direct | proxy RSS before MiB | "
            "proxy RSS growth during MiB |",
            "|---|---:|---:|---:|---:|---:|"]
    for target in TARGETS:
        secs = median(data, "copy", target, "seconds")
        if secs is None:
            continue
        rows.append("| {} | {} | {} | {} | {} | {} |".format(
            target, fmt(secs, ".2f"), fmt(median(data, "copy", target, "mb_per_s"), ".0f"),
            fmt(ratio(data, "copy", target, "mb_per_s"), ".2f"),
            fmt(median(data, "copy", target, "rss_before_mib"), ".1f"),
            fmt(median(data, "copy", target, "rss_growth_mib"), ".1f")))
    return rows


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: report.py RAW.tsv [scenario=label ...]")
    data = load(sys.argv[1])
    labels = dict(arg.split("=", 1) for arg in sys.argv[2:] if "=" in arg)
    out = pgbench_table(data, labels)
    if any(s == "idle" for s, _, _ in data):
        out += [""] + idle_table(data)
    if any(s == "copy" for s, _, _ in data):
        out += [""] + copy_table(data)
    print("\n".join(out))


if __name__ == "__main__":
    main()
