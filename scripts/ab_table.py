"""One line per bf16 s128 batch size: a variant's `albert bench --json` p50 against the baseline's,
both from the same scripts/gpu-check run, and against the prediction notes/predictions.json wrote
down for LABEL before the run. Usage:
  python3 scripts/ab_table.py LABEL baseline.jsonl variant.jsonl
  python3 scripts/ab_table.py --check scripts/gpu-check   (CI: every label gpu-check passes has
                                                           an entry, every range is well formed)"""
import json
import os
import re
import sys

PREDICTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notes", "predictions.json")
FORMS = ("delta_ms", "change", "ms")


def predictions():
    with open(PREDICTIONS) as f:
        return json.load(f)


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
                if products and r.get("cuda_grid_ln"):
                    products += ", grid LayerNorm"
                if products and r.get("cuda_resident"):
                    products += ", resident layers"
                out[r["batch"]] = (r["p50_ms"], products)
    return out


def verdict(lo, hi, value, lower_is_faster=True):
    """Where `value` fell against [lo, hi]: inside, or on the faster or slower side."""
    if lo <= value <= hi:
        return "as predicted"
    faster = value < lo if lower_is_faster else value > hi
    return "faster than predicted" if faster else "slower than predicted"


def against_prediction(entry, batch, base_ms, ms):
    """The prediction for this batch and where the measurement fell, or '' without one."""
    key = str(batch)
    for form in FORMS:
        rng = entry.get(form, {}).get(key)
        if rng is None:
            continue
        lo, hi = rng
        if form == "delta_ms":
            if base_ms is None:
                return ""
            v = ms - base_ms
            return "; predicted %+.3f..%+.3f ms, measured %+.3f: %s" % (lo, hi, v, verdict(lo, hi, v))
        if form == "change":
            if base_ms is None:
                return ""
            v = (ms - base_ms) / base_ms
            return "; predicted %+.0f..%+.0f%%, measured %+.1f%%: %s" % (100 * lo, 100 * hi, 100 * v, verdict(lo, hi, v))
        return "; predicted %.2f-%.2f ms: %s" % (lo, hi, verdict(lo, hi, ms))
    return ""


def check(gpu_check):
    """Errors: labels gpu-check passes to this script without an entry, and malformed entries."""
    preds = predictions()
    errors = []
    text = open(gpu_check).read()
    labels = re.findall(r'ab_table\.py "([^"]+)"', text)
    if not labels:
        errors.append("%s passes no label to ab_table.py" % gpu_check)
    for label in labels:
        if label not in preds["ab"]:
            errors.append("label %r (gpu-check) has no entry in notes/predictions.json" % label)
    for label, entry in preds["ab"].items():
        if label not in labels:
            errors.append("notes/predictions.json: %r is no gpu-check label" % label)
        forms = [f for f in FORMS if f in entry]
        if not forms and not entry.get("none"):
            errors.append("%r: neither a range nor `none` (why there is no number)" % label)
        batches = [b for f in forms for b in entry[f]]
        if len(batches) != len(set(batches)):
            errors.append("%r: a batch predicted twice" % label)
        for f in forms:
            for b, rng in entry[f].items():
                ok = b.isdigit() and isinstance(rng, list) and len(rng) == 2 and rng[0] <= rng[1]
                if not ok:
                    errors.append("%r %s[%s]: not a [lo, hi] range" % (label, f, b))
    for table, shapes in preds["kernels"].items():
        for shape, rng in shapes.items():
            if not (isinstance(rng, list) and len(rng) == 2 and 0 < rng[0] <= rng[1]):
                errors.append("kernels %s %r: not a [lo, hi] range of us" % (table, shape))
    for b, rng in preds["default"]["ms"].items():
        if not (b.isdigit() and len(rng) == 2 and 0 < rng[0] <= rng[1]):
            errors.append("default ms[%s]: not a [lo, hi] range" % b)
    return errors


def main():
    if sys.argv[1] == "--check":
        errors = check(sys.argv[2])
        for e in errors:
            print("ab_table --check: " + e, file=sys.stderr)
        sys.exit(1 if errors else 0)
    label, base, variant = sys.argv[1], p50s(sys.argv[2]), p50s(sys.argv[3])
    entry = predictions()["ab"].get(label, {})
    for b in sorted(variant):
        ms, products = variant[b]
        used = " [products: %s]" % products if products else ""
        base_ms = base[b][0] if b in base else None
        pred = against_prediction(entry, b, base_ms, ms)
        if pred and "as predicted" not in pred and entry.get("else"):
            pred += " (the other outcome it named: %s)" % entry["else"]
        if base_ms is not None:
            print("%s: b%d/s128 bf16 %.3f ms, baseline %.3f ms (%.3fx)%s%s" % (label, b, ms, base_ms, base_ms / ms, pred, used))
        else:
            print("%s: b%d/s128 bf16 %.3f ms (no baseline)%s%s" % (label, b, ms, pred, used))


if __name__ == "__main__":
    main()
