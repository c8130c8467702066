"""One line per bf16 s128 batch size: a variant's `albert bench --json` p50 against the baseline's,
both from the same scripts/gpu-check run. Usage:
  python3 scripts/ab_table.py LABEL baseline.jsonl variant.jsonl"""
import json
import sys


def p50s(path):
    """{batch: (p50 ms, the products' kernels (and whether the LayerNorm may fuse) or None)}
    of the bf16 s128 lines."""
    out = {}
    for line in open(path):
        if line.startswith("{") and "gflops" in line:
            r = json.loads(line)
            if r["dtype"] == "bf16" and r["seq"] == 128:
                products = r.get("cuda_products")
                if products and r.get("cuda_fused_ln"):
                    products += ", fused LayerNorm"
                out[r["batch"]] = (r["p50_ms"], products)
    return out


label, base, variant = sys.argv[1], p50s(sys.argv[2]), p50s(sys.argv[3])
for b in sorted(variant):
    ms, products = variant[b]
    used = " [products: %s]" % products if products else ""
    if b in base:
        print("%s: b%d/s128 bf16 %.3f ms, baseline %.3f ms (%.3fx)%s" % (label, b, ms, base[b][0], base[b][0] / ms, used))
    else:
        print("%s: b%d/s128 bf16 %.3f ms (no baseline)%s" % (label, b, ms, used))
