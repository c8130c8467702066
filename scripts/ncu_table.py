"""Per-kernel times of one forward pass from an ncu CSV (scripts/gpu-check: --metrics
gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv), grouped by kernel
and launch shape: launches, total and per-launch time, DRAM bytes per launch, and the share of
the pass.

With --costs (what `albert bench --kernel-costs FILE` wrote for the same pass: each launch's
FLOPs and the bytes it must move once), also each group's floor, max(FLOPs / peak, bytes /
bandwidth) per launch, and the fraction of it the kernel reaches (floor / time). The launches are
matched by their order in the pass; a different kernel at the same place is reported and the
floors left out.

With --predict TABLE (and --costs), also the time per launch notes/predictions.json predicted
for each shape of that table ("kernels": b1, b32) before the run, and where the measurement fell.

Usage: python3 scripts/ncu_table.py ncu.csv [--costs costs.jsonl --batch 32 --seq 128]
       [--peak-tflops 788] [--bandwidth-tbs 4.3]   (defaults: H200, bf16 tensor cores)
       [--predict b32]"""
import argparse
import collections
import csv
import json
import os

UNIT_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
UNIT_BYTES = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}


def read_ncu(path):
    """Launches in order: (name, grid, block, {"us", "bytes"})."""
    rows = csv.DictReader(l for l in open(path) if l.startswith('"'))
    launches = collections.OrderedDict()
    for r in rows:
        key = (r["ID"], r["Kernel Name"].split("(")[0], r["Grid Size"], r["Block Size"])
        m = launches.setdefault(key, {})
        v = float(r["Metric Value"].replace(",", ""))
        if r["Metric Name"] == "gpu__time_duration.sum":
            m["us"] = v * UNIT_US[r["Metric Unit"]]
        else:
            m["bytes"] = m.get("bytes", 0.0) + v * UNIT_BYTES[r["Metric Unit"]]
    return [(name, grid, block, m) for (_, name, grid, block), m in launches.items()]


def floors(launches, costs_path, batch, seq, peak_flops, bandwidth):
    """(floor in us, shape) of each launch, or None (printed why) if the pass does not match."""
    costs = [json.loads(l) for l in open(costs_path) if l.strip()]
    costs = [c for c in costs if c["batch"] == batch and c["seq"] == seq]
    costs.sort(key=lambda c: c["launch"])
    if len(costs) != len(launches):
        print(f"floors left out: {len(costs)} launches in {costs_path} for b{batch}/s{seq}, "
              f"{len(launches)} in the ncu pass")
        return None
    out = []
    for i, ((name, _, _, _), c) in enumerate(zip(launches, costs)):
        if c["kernel"] != name:
            print(f"floors left out: launch {i} is {name} in the ncu pass, {c['kernel']} in the costs")
            return None
        out.append((max(c["flops"] / peak_flops, c["bytes"] / bandwidth) * 1e6, c.get("shape", "-")))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--costs")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--peak-tflops", type=float, default=788.0)
    p.add_argument("--bandwidth-tbs", type=float, default=4.3)
    p.add_argument("--predict", help="a table of notes/predictions.json's `kernels` (b1, b32)")
    a = p.parse_args()
    predicted = {}
    if a.predict:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notes", "predictions.json")
        predicted = json.load(open(path))["kernels"].get(a.predict, {})
    launches = read_ncu(a.csv)
    floor = None
    if a.costs:
        floor = floors(launches, a.costs, a.batch, a.seq, a.peak_tflops * 1e12, a.bandwidth_tbs * 1e12)
    groups = collections.OrderedDict()
    for i, (name, grid, block, m) in enumerate(launches):
        shape = floor[i][1] if floor else ""
        # The shape splits a kernel's launches on the same grid (the two LayerNorms: "+4" partials).
        g = groups.setdefault((name, grid, block, shape), [0, 0.0, 0.0, 0.0, shape])
        g[0] += 1
        g[1] += m.get("us", 0.0)
        g[2] += m.get("bytes", 0.0)
        g[3] += floor[i][0] if floor else 0.0
    total = sum(g[1] for g in groups.values())
    line = f"{a.csv}: {len(launches)} launches, {total:.1f} us of kernels"
    if floor:
        least = sum(f for f, _ in floor)
        line += (f"; floor {least:.1f} us ({least / total:.0%}) at {a.peak_tflops:g} TFLOP/s"
                 f" and {a.bandwidth_tbs:g} TB/s")
    print(line)
    head = f"{'kernel':44} {'grid':>13} {'n':>3} {'total us':>9} {'us/launch':>9} {'MB/launch':>9} {'share':>6}"
    print(head + (f" {'floor us':>8} {'of floor':>8}  {'shape':16}" if floor else "")
          + ("  predicted us/launch" if predicted and floor else ""))
    for (name, grid, _, _), (n, us, b, fl, shape) in sorted(groups.items(), key=lambda x: -x[1][1]):
        row = f"{name[:44]:44} {grid:>13} {n:3d} {us:9.1f} {us / n:9.1f} {b / n / 1e6:9.2f} {us / total:6.1%}"
        if floor:
            row += f" {fl / n:8.2f} {fl / us if us else 0:8.0%}  {shape:16}"
            if shape in predicted:
                lo, hi = predicted[shape]
                where = "as predicted" if lo <= us / n <= hi else ("faster" if us / n < lo else "slower")
                row += f"  {lo:g}-{hi:g}: {where}"
        print(row.rstrip())


if __name__ == "__main__":
    main()
