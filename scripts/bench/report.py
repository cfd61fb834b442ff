#!/usr/bin/env python3
"""Turns the raw measurements of scripts/bench.sh into the Markdown results tables.

Input: a TSV file of `round scenario target metric value` lines. Every figure printed is the
median over rounds; the ratio to direct is computed within each round first (proxy and direct
ran back to back, under the same background load) and then its median is taken. The
transaction-pooling scenarios (txn_*) get their own table, with the ratio to PgBouncer in
transaction mode as well. A pgbench run recorded as `unsupported` or `pgbench_failed` (no TPS in
any round) shows "unsupported" or "failed" instead of its figures.
"""
import statistics
import sys
from collections import defaultdict

TARGETS = ["direct", "pgbouncer", "pgpool2", "pgpool-rs", "pgpool-rs-mt"]
TXN_TARGETS = ["direct", "pgbouncer-txn", "pgpool-rs-txn"]
TXN_BASELINE = "pgbouncer-txn"
# Metric recorded for a pgbench run that printed no TPS -> word shown in its TPS cell.
OUTCOMES = {"unsupported": "unsupported", "pgbench_failed": "failed"}
# Scenarios with tables of their own (not pgbench).
NOT_PGBENCH = ("idle", "copy")


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


def ratio(data, scenario, target, metric, base="direct"):
    mine = data.get((scenario, target, metric), {})
    other = data.get((scenario, base, metric), {})
    values = [mine[r] / other[r] for r in mine if other.get(r)]
    return statistics.median(values) if values else None


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def scenarios_of(data, metrics):
    seen = []
    for scenario, _, m in data:
        if m in metrics and scenario not in seen:
            seen.append(scenario)
    return seen


def is_txn(scenario):
    return scenario.startswith("txn_")


def outcome(data, scenario, target):
    """The word shown for a target that never printed TPS in this scenario, or None."""
    for metric, word in OUTCOMES.items():
        if (scenario, target, metric) in data:
            return word
    return None


def pgbench_rows(data, scenario, target, label, bases):
    tps = median(data, scenario, target, "tps")
    if tps is None:
        word = outcome(data, scenario, target)
        if word is None:
            return []
        return ["| {} | {} | {} |".format(label, target, " | ".join([word] + ["n/a"] * (len(bases) + 3)))]
    cells = [fmt(tps, ".0f")]
    cells += [fmt(ratio(data, scenario, target, "tps", base), ".2f") for base in bases]
    cells += [fmt(median(data, scenario, target, "p50_ms"), ".3f"),
              fmt(median(data, scenario, target, "p99_ms"), ".3f"),
              fmt(median(data, scenario, target, "cpu_us_per_tx"), ".0f")]
    return ["| {} | {} | {} |".format(label, target, " | ".join(cells))]


def pgbench_table(data, labels, txn):
    if txn:
        targets, bases = TXN_TARGETS, [TXN_BASELINE, "direct"]
        rows = ["| scenario | target | TPS | ratio to pgbouncer-txn | ratio to direct | "
                "p50 ms | p99 ms | proxy CPU µs/tx |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
    else:
        targets, bases = TARGETS, ["direct"]
        rows = ["| scenario | target | TPS | ratio to direct | p50 ms | p99 ms | proxy CPU µs/tx |",
                "|---|---|---:|---:|---:|---:|---:|"]
    scenarios = [s for s in scenarios_of(data, ("tps", *OUTCOMES))
                 if s not in NOT_PGBENCH and is_txn(s) == txn]
    if not scenarios:
        return []
    for scenario in scenarios:
        for target in targets:
            rows += pgbench_rows(data, scenario, target, labels.get(scenario, scenario), bases)
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
    out = pgbench_table(data, labels, txn=False)
    txn = pgbench_table(data, labels, txn=True)
    if txn:
        out += [""] + txn
    if any(s == "idle" for s, _, _ in data):
        out += [""] + idle_table(data)
    if any(s == "copy" for s, _, _ in data):
        out += [""] + copy_table(data)
    print("\n".join(out))


if __name__ == "__main__":
    main()
