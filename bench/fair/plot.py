#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Draws what bench/fair/run.py --json measured, for docs/benchmarks.md (Debian's python3-matplotlib).

    plot.py RESULTS.json OUTDIR      writes OUTDIR/ratios.png and, if measured, OUTDIR/latency.png

ratios.png: for every row, how many times better mprocess is than Python (the ratio of the medians, on a
log scale), with the spread the runs allow (worst mprocess run against best Python run, and the reverse);
where a row has the machine's limit (plain POSIX doing the same work), a mark shows how far the limit is
from Python on the same scale: the most any library could show there.
latency.png: half a round trip (p50) against payload size, mprocess's Pipe, a Unix socket pair and
Python's Pipe, ends on different CPUs (solid) and on one CPU (dashed).
"""
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def better(kind, cpp, py):
    """How many times better mprocess's value is than Python's."""
    return py / cpp if kind == "time" else cpp / py


def ratios(data, out):
    rows = [r for r in data["rows"] if r["cpp"] and r["py"]]
    labels, mid, lo, hi, limits = [], [], [], [], []
    for r in rows:
        kind = r["kind"]
        m = better(kind, statistics.median(r["cpp"]), statistics.median(r["py"]))
        worst_cpp = max(r["cpp"]) if kind == "time" else min(r["cpp"])
        best_cpp = min(r["cpp"]) if kind == "time" else max(r["cpp"])
        worst_py = max(r["py"]) if kind == "time" else min(r["py"])
        best_py = min(r["py"]) if kind == "time" else max(r["py"])
        labels.append(r["key"])
        mid.append(m)
        lo.append(m - better(kind, worst_cpp, best_py))
        hi.append(better(kind, best_cpp, worst_py) - m)
        if r.get("limit"):
            limits.append((len(labels) - 1, better(kind, statistics.median(r["limit"]), statistics.median(r["py"]))))
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.5))
    y = range(len(rows))
    ax.barh(y, mid, xerr=[lo, hi], color="#3a7bd5", ecolor="#222", capsize=3)
    ax.axvline(1, color="#c33", linewidth=1)
    if limits:
        ax.plot([x for _, x in limits], [i for i, _ in limits], linestyle="none", marker="D", color="#e08a1e",
                markeredgecolor="#222", label="the machine's limit / Python (plain POSIX, the same work)")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("mprocess / Python (times better; 1 = equal)")
    ax.set_title(f"mprocess against Python's multiprocessing, {data['runs']} interleaved runs a side")
    reach = dict(limits)
    for i, m in enumerate(mid):  # beyond the spread's end and the limit's mark, so that none hides another
        ax.text(max(m + hi[i], reach.get(i, 0)) * 1.15, i, f"{m:.3g}x", va="center", fontsize=8)
    fig.text(0.01, 0.005, data["machine"], fontsize=7, color="#555")
    fig.tight_layout()
    fig.savefig(out / "ratios.png", dpi=110)


def latency(data, out):
    lat = data.get("latency")
    if not lat:
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"mprocess Pipe": "#3a7bd5", "Unix socket pair": "#888", "Python Pipe": "#e08a1e"}
    for side, color in colors.items():
        for cpus, style in (("cross", "-"), ("same", "--")):
            pts = [(e["size"], statistics.median(e["sides"][side]["p50"])) for e in lat
                   if e["cpus"] == cpus and e["sides"][side]["p50"]]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] * 1e6 for p in pts], style, marker="o", color=color,
                        label=f"{side}, {'different CPUs' if cpus == 'cross' else 'one CPU'}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("payload (bytes)")
    ax.set_ylabel("half a round trip, p50 (µs)")
    ax.set_title("Latency by payload size")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.text(0.01, 0.005, data["machine"], fontsize=7, color="#555")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    ratios(data, out)
    latency(data, out)
    print(f"plots in {out}")


if __name__ == "__main__":
    main()
