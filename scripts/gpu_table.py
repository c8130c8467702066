"""Reads the JSON lines that scripts/gpu-check collected (albert bench, transformers, cuBLAS)
and prints one ratio table: our p50 latency per (batch, seq, dtype) next to transformers eager and
sdpa (bf16) and the ratio (theirs / ours: above 1 means we are faster)."""
import json
import os
import sys

rows = [json.loads(l) for path in sys.argv[1:] for l in open(path) if l.startswith("{")]
ours = {(r["batch"], r["seq"], r["dtype"]): r for r in rows if "gflops" in r}
theirs = {(r["engine"], r["batch"], r["seq"]): r["p50_ms"] for r in rows if "engine" in r}
gemms = [r for r in rows if "cublas_us" in r]

print(f"{'batch':>5} {'seq':>4} {'dtype':>5} {'ours ms':>9} {'TFLOP/s':>8} {'eager ms':>9} {'x eager':>8} {'sdpa ms':>8} {'x sdpa':>7}")
for (b, s, dt), r in sorted(ours.items()):
    eager = theirs.get(("transformers-eager", b, s))
    sdpa = theirs.get(("transformers-sdpa", b, s))
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9}"
    ratio = lambda v: f"{v / r['p50_ms']:8.2f}" if v is not None else f"{'-':>8}"
    print(f"{b:>5} {s:>4} {dt:>5} {r['p50_ms']:9.3f} {r['gflops'] / 1e3:8.2f} {fmt(eager)} {ratio(eager)} {fmt(sdpa)} {ratio(sdpa)}")
if gemms:
    print(f"\n{'product':>12} {'M':>6} {'N':>6} {'K':>6} {'dtype':>5} {'splits':>6} {'ours us':>9} {'cuBLAS us':>10} {'cuBLAS/ours':>11}")
    for g in gemms:
        print(f"{g['name']:>12} {g['m']:>6} {g['n']:>6} {g['k']:>6} {g['dtype']:>5} {g.get('splits', 1):>6} {g['ours_us']:9.1f} {g['cublas_us']:10.1f} {1 / g['ratio']:11.2f}")

# The default path against the prediction written down before the run (notes/predictions.json).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_table import predictions, verdict  # noqa: E402

default = predictions()["default"]
for b, (lo, hi) in sorted(default["ms"].items(), key=lambda kv: int(kv[0])):
    r = ours.get((int(b), 128, "bf16"))
    if r:
        print(f"default path b{b}/s128 bf16: {r['p50_ms']:.3f} ms; run 3 {default['run3_ms'][b]:.3f} ms; "
              f"predicted {lo:.2f}-{hi:.2f} ms (the default path's {default['versions']}): {verdict(lo, hi, r['p50_ms'])}")
