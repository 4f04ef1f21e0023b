#!/usr/bin/env python3
"""Runs the dco-crypto data-path benchmark several times and prints the ratio tables of
crypto/BENCHMARKS.md: time of our seal/open path divided by the raw ring call measured in
the same run, as the median over the runs (the machine is shared and noisy).

    python3 crypto/scripts/bench_ratios.py --runs 3 [--filter REGEX] [--only-report]

Extra arguments after `--` go to criterion (default: --warm-up-time 1 --measurement-time 3).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CRIT = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "criterion")
VARIANTS = ["ring_raw", "single", "batch32", "batch64", "rustcrypto_raw"]


def read_estimates():
    """{(op, cipher, size): {function: median ns per 64-packet iteration}}."""
    res = {}
    for dirpath, _, files in os.walk(CRIT):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            meta = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        parts = meta["group_id"].split("/")
        if len(parts) != 3 or parts[0] not in ("seal", "open"):
            continue
        key = (parts[0], parts[1], int(parts[2]))
        res.setdefault(key, {})[meta["function_id"]] = est["median"]["point_estimate"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--filter", default="", help="criterion benchmark filter (regex)")
    ap.add_argument("--only-report", action="store_true", help="do not run, report target/criterion")
    ap.add_argument("--save", help="write the per-run medians to this JSON file as they come")
    ap.add_argument("--load", help="report from a JSON file written by --save")
    ap.add_argument("criterion_args", nargs="*")
    a = ap.parse_args()
    cargs = a.criterion_args or ["--warm-up-time", "1", "--measurement-time", "3", "--noplot"]
    runs = []
    if a.load:
        with open(a.load) as f:
            runs = [{(k.split("|")[0], k.split("|")[1], int(k.split("|")[2])): v
                     for k, v in r.items()} for r in json.load(f)]
    elif a.only_report:
        runs.append(read_estimates())
    else:
        for i in range(a.runs):
            print(f"[bench] run {i + 1}/{a.runs}", file=sys.stderr, flush=True)
            cmd = ["cargo", "bench", "-p", "dco-crypto", "--bench", "data_path", "--"]
            if a.filter:
                cmd.append(a.filter)
            subprocess.run(cmd + cargs, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            runs.append(read_estimates())
            if a.save:
                with open(a.save, "w") as f:
                    json.dump([{"|".join(map(str, k)): v for k, v in r.items()} for r in runs], f)
    keys = sorted(set().union(*runs), key=lambda k: (k[0] != "seal", k[1], k[2]))
    print(f"Median over {len(runs)} run(s); ns per packet (criterion median / 64), ratio to "
          "ring_raw of the same run, then the median of the per-run ratios.\n")
    print("| op | cipher | size | ring_raw ns | single ns | single / raw | batch32 / raw "
          "| batch64 / raw | rustcrypto / raw |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        per = [r[k] for r in runs if k in r and "ring_raw" in r[k]]
        if not per:
            continue

        def ns(v):
            vals = [p[v] / 64 for p in per if v in p]
            return f"{statistics.median(vals):.0f}" if vals else "-"

        def ratio(v):
            vals = [p[v] / p["ring_raw"] for p in per if v in p]
            if not vals:
                return "-"
            spread = f" ({min(vals):.2f}–{max(vals):.2f})" if len(vals) > 1 else ""
            return f"{statistics.median(vals):.3f}{spread}"

        print(f"| {k[0]} | {k[1]} | {k[2]} | {ns('ring_raw')} | {ns('single')} | "
              f"{ratio('single')} | {ratio('batch32')} | {ratio('batch64')} | "
              f"{ratio('rustcrypto_raw')} |")


if __name__ == "__main__":
    main()
