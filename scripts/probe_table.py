"""The persistent-kernel probe's table (dev/probes/resident.cu, run by scripts/gpu-check): per b1
product phase and slab width, us per phase for the barrier alone, the product from a resident
slab, both, both with the slab re-read from L2, and (the two products feeding a LayerNorm) the
product with its LayerNorm phase; each against notes/predictions.json ("probe"), written down
before a GPU ran it; the attention as a phase (the engine's kernel per work item, then the
barrier); then what a persistent b1 pass would take by these numbers. Usage:
  python3 scripts/probe_table.py probe.jsonl
  python3 scripts/probe_table.py --check     (CI: the "probe" entry is well formed)"""
import json
import sys

from ab_table import predictions, verdict

SHAPES = ("128x768x2304", "128x768x768", "128x768x3072", "128x3072x768/4")  # QKV, output, FFN in, out
LN_SHAPES = ("128x768x768", "128x3072x768/4")  # their LayerNorm follows in the same pass
ATTENTION = "b1 s128 12x64"  # the attention's launch shape, as --kernel-costs names it


def rows(path):
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{") and '"probe"' in line:
            out.append(json.loads(line))
    return out


def against(rng, value):
    return "" if rng is None else " (predicted %g-%g: %s)" % (rng[0], rng[1], verdict(rng[0], rng[1], value))


def check():
    p = predictions().get("probe")
    errors = []
    if not p:
        return ["notes/predictions.json has no `probe` entry"]

    def rng_ok(r):
        return isinstance(r, list) and len(r) == 2 and 0 <= r[0] <= r[1]

    for k in ("1 per SM", "2 per SM"):
        if not rng_ok(p.get("barrier_us", {}).get(k)):
            errors.append("probe barrier_us[%r]: not a [lo, hi] range" % k)
    for s in SHAPES:
        for nb in (16, 32, 64):
            if not rng_ok(p.get("product_us", {}).get("%s nb%d" % (s, nb))):
                errors.append("probe product_us[%r]: not a [lo, hi] range" % ("%s nb%d" % (s, nb)))
    for k in ("stream_extra_us", "ln_extra_us", "attention_us", "attention_barrier_us", "layer_us", "pass_ms"):
        if not rng_ok(p.get(k)):
            errors.append("probe %s: not a [lo, hi] range" % k)
    for k in ("embeddings_us",):
        if not isinstance(p.get("assumed", {}).get(k), (int, float)):
            errors.append("probe assumed.%s: not a number" % k)
    return errors


def main():
    if sys.argv[1] == "--check":
        errors = check()
        for e in errors:
            print("probe_table --check: " + e, file=sys.stderr)
        sys.exit(1 if errors else 0)
    p = predictions()["probe"]
    best = {}
    for r in rows(sys.argv[1]):
        if "shape" not in r:
            print("resident probe: %s" % r.get("skipped", r))
            continue
        slab = " NB %d" % r["nb"] if r["nb"] else ""
        head = "resident probe %s%s: %d blocks (%d per SM fit)" % (r["shape"], slab, r["blocks"], r["per_sm"])
        if "skipped" in r:
            print("%s: skipped, %s" % (head, r["skipped"]))
            continue
        if r["shape"] == ATTENTION:
            print("%s: attention %.2f us%s, with the barrier %.2f%s; max error %.1e%s"
                  % (head, r["attention_us"], against(p["attention_us"], r["attention_us"]), r["attention_barrier_us"],
                     against(p["attention_barrier_us"], r["attention_barrier_us"]), r["max_err"],
                     "" if r["ok"] else " WRONG"))
            if r["ok"]:
                best[ATTENTION] = r["attention_barrier_us"]
            continue
        if r["shape"] == "barrier":
            key = "%d per SM" % (r["blocks"] // r["sms"])
            print("%s: barrier %.2f us%s" % (head, r["barrier_us"], against(p["barrier_us"].get(key), r["barrier_us"])))
            continue
        extra = r["stream_barrier_us"] - r["product_barrier_us"]
        rng = p["product_us"].get("%s nb%d" % (r["shape"], r["nb"]))
        ln = ""
        if "product_ln_us" in r:
            ln_extra = r["product_ln_us"] - r["product_barrier_us"]
            ln = ", with its LayerNorm phase %.2f (%+.2f%s)" % (r["product_ln_us"], ln_extra,
                                                                 against(p["ln_extra_us"], ln_extra))
        print("%s: product %.2f us%s, + barrier %.2f, barrier alone %.2f, slab re-read each phase %+.2f%s%s; "
              "max error %.1e%s"
              % (head, r["product_us"], against(rng, r["product_us"]), r["product_barrier_us"], r["barrier_us"],
                 extra, against(p["stream_extra_us"], extra), ln, r["max_err"], "" if r["ok"] else " WRONG"))
        phase = r.get("product_ln_us") if r["shape"] in LN_SHAPES else r["product_barrier_us"]
        if r["ok"] and phase is not None:
            best[r["shape"]] = min(best.get(r["shape"], 1e9), phase)
    if all(s in best for s in SHAPES):
        a = p["assumed"]
        attention = best.get(ATTENTION)
        measured = attention is not None
        if not measured:
            attention = p["attention_barrier_us"][1]  # the prediction's worst case
        layer = sum(best[s] for s in SHAPES) + attention
        total = (12 * layer + a["embeddings_us"]) / 1000.0
        print("persistent b1/s128 pass by these numbers: %.1f us per layer application%s (the 4 products' best "
              "phases with their barriers and LayerNorms, the attention phase %.1f us%s), x 12 + embeddings "
              "%.1f us (assumed) = %.3f ms%s"
              % (layer, against(p["layer_us"], layer), attention, "" if measured else " (not measured: predicted worst)",
                 a["embeddings_us"], total, against(p["pass_ms"], total)))
    else:
        print("persistent b1/s128 pass: not estimated (a product phase is missing or wrong)")


if __name__ == "__main__":
    main()
