"""Per-kernel times of one forward pass from an ncu CSV (scripts/gpu-check: --metrics
gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv), grouped by kernel
and launch shape: launches, total and per-launch time, DRAM bytes per launch, and the share of
the pass. Usage: python3 scripts/ncu_table.py ncu.csv"""
import collections
import csv
import sys

UNIT_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}

rows = csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))
launches = collections.OrderedDict()
for r in rows:
    key = (r["ID"], r["Kernel Name"].split("(")[0], r["Grid Size"], r["Block Size"])
    m = launches.setdefault(key, {})
    v = float(r["Metric Value"].replace(",", ""))
    if r["Metric Name"] == "gpu__time_duration.sum":
        m["us"] = v * UNIT_US[r["Metric Unit"]]
    else:
        m["bytes"] = m.get("bytes", 0.0) + v * {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}[r["Metric Unit"]]
groups = collections.OrderedDict()
for (_, name, grid, block), m in launches.items():
    g = groups.setdefault((name, grid, block), [0, 0.0, 0.0])
    g[0] += 1
    g[1] += m.get("us", 0.0)
    g[2] += m.get("bytes", 0.0)
total = sum(g[1] for g in groups.values())
print(f"{sys.argv[1]}: {len(launches)} launches, {total:.1f} us of kernels")
print(f"{'kernel':44} {'grid':>13} {'n':>3} {'total us':>9} {'us/launch':>9} {'MB/launch':>9} {'share':>6}")
for (name, grid, _), (n, us, b) in sorted(groups.items(), key=lambda x: -x[1][1]):
    print(f"{name[:44]:44} {grid:>13} {n:3d} {us:9.1f} {us / n:9.1f} {b / n / 1e6:9.2f} {us / total:6.1%}")
