"""The helper of scripts/compare-cpu: checks, exports, optimizes and times ONNX Runtime, PyTorch
and `albert bench` on the model and inputs `albert bench --export` wrote, and prints a ratio
table (throughput relative to ONNX Runtime f32; GFLOP/s with the FLOP count of `albert bench`).
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np
import onnxruntime as ort
import torch
from safetensors.numpy import load_file, save_file
from transformers import AlbertModel

SHAPES = [(1, 128), (8, 128), (1, 512)]
THREADS = 2


def flops(cfg, b, s):
    """encoder_flops of src/bench.rs."""
    m, e, h, i = b * s, cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size
    per_layer = 4 * 2 * m * h * h + 2 * 2 * m * s * h + 2 * 2 * m * h * i
    return 2 * m * e * h + cfg.num_hidden_layers * cfg.inner_group_num * per_layer


def inputs_of(model_dir, b, s):
    t = load_file(os.path.join(model_dir, f"inputs.b{b}.s{s}.safetensors"))
    return {k: t[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def median_ms(fn, iters, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e3


def export_onnx(model, path):
    ids = torch.randint(5, 30000, (2, 16))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    try:
        torch.onnx.export(model, args, path, input_names=names,
                          output_names=["last_hidden_state", "pooler_output"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
        return "torchscript exporter"
    except Exception as e:  # the legacy exporter may be gone: the dynamo exporter then
        print(f"# legacy ONNX export failed ({type(e).__name__}: {e}); trying dynamo=True")
        dyn = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=2, max=512)
        shapes = {n: {0: dyn[0], 1: dyn[1]} for n in names}
        torch.onnx.export(model, args, path, input_names=names,
                          output_names=["last_hidden_state", "pooler_output"],
                          dynamic_shapes=shapes, opset_version=18, dynamo=True)
        return "dynamo exporter"


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--albert", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3,
                    help="every engine is timed this many times, interleaved; the best median counts")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    print(f"# load average before: {os.getloadavg()}")

    model = AlbertModel.from_pretrained(args.model, attn_implementation="sdpa").eval()
    cfg = model.config

    # 1. Same weights, same model: our fast path on b1/s128 against transformers (f32).
    x = inputs_of(args.model, 1, 128)
    with torch.inference_mode():
        want = model(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()
    ours = os.path.join(args.work, "ours.safetensors")
    subprocess.run([args.albert, "forward", "--model", args.model, "--head", "AlbertModel",
                    "--inputs", os.path.join(args.model, "inputs.b1.s128.safetensors"),
                    "--output", ours, "--device", "cpu"], check=True, capture_output=True)
    got = load_file(ours)["last_hidden_state"]
    print(f"# albert (fast, f32) vs transformers (f32) on the exported weights: "
          f"last_hidden_state rel. error {rel(got, want):.2e}")

    # 2. ONNX export (eager attention: the pattern onnxruntime's optimizer fuses into its
    #    Attention op; the sdpa graph does not fuse) + transformer optimizer.
    from onnxruntime.transformers import optimizer
    eager = AlbertModel.from_pretrained(args.model, attn_implementation="eager").eval()
    raw = os.path.join(args.work, "albert.onnx")
    opt = os.path.join(args.work, "albert.opt.onnx")
    how = export_onnx(eager, raw)
    om = optimizer.optimize_model(raw, model_type="bert", num_heads=cfg.num_attention_heads,
                                  hidden_size=cfg.hidden_size, opt_level=1)
    om.save_model_to_file(opt)
    fused = {k: v for k, v in om.get_fused_operator_statistics().items() if v}
    print(f"# ONNX: {how} (eager attention); optimizer fused {fused}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(opt, so, providers=["CPUExecutionProvider"])
    feed_names = {i.name for i in sess.get_inputs()}
    y = sess.run(["last_hidden_state"], {k: v for k, v in x.items() if k in feed_names})[0]
    print(f"# ONNX Runtime vs transformers: last_hidden_state rel. error {rel(y, want):.2e}")

    # 3. Timing, in interleaved rounds (a concurrent job slows every engine alike); each
    #    engine's best median over the rounds counts.
    rows = {}

    def keep(key, ms):
        rows[key] = min(ms, rows.get(key, float("inf")))

    for rnd in range(args.rounds):
        for b, s in SHAPES:
            x = inputs_of(args.model, b, s)
            feed = {k: v for k, v in x.items() if k in feed_names}
            keep((b, s, "ONNX Runtime f32"),
                 median_ms(lambda: sess.run(["last_hidden_state"], feed), args.iters))
            tx = {k: torch.from_numpy(v) for k, v in x.items()}
            with torch.inference_mode():
                keep((b, s, "PyTorch f32 (sdpa)"), median_ms(lambda: model(**tx), args.iters))
        for dtype in ["f32", "bf16"]:
            for batch, seq in [("1,8", "128"), ("1", "512")]:
                out = subprocess.run([args.albert, "bench", "--device", "cpu", "--dtype", dtype,
                                      "--batch", batch, "--seq", seq, "--iters", str(args.iters),
                                      "--warmup", "2", "--json"],
                                     check=True, capture_output=True, text=True).stdout
                for line in out.splitlines():
                    r = json.loads(line)
                    keep((r["batch"], r["seq"], f"albert {dtype}"), r["p50_ms"])
        print(f"# round {rnd + 1}/{args.rounds} done, load average {os.getloadavg()}")

    engines = ["ONNX Runtime f32", "PyTorch f32 (sdpa)", "albert f32", "albert bf16"]
    print()
    print(f"{'shape':>9} | " + " | ".join(f"{e:>26}" for e in engines))
    print("-" * (12 + 29 * len(engines)))
    for b, s in SHAPES:
        base = rows[(b, s, engines[0])]
        cells = []
        for e in engines:
            ms = rows[(b, s, e)]
            gf = flops(cfg, b, s) / (ms / 1e3) / 1e9
            cells.append(f"{ms:7.1f} ms {gf:5.0f} GF/s {base / ms:4.2f}x")
        print(f"  b{b}/s{s:<4} | " + " | ".join(f"{c:>26}" for c in cells))
    print("\n(ratio: throughput relative to ONNX Runtime f32; GF/s: GFLOP/s as albert bench counts)")


if __name__ == "__main__":
    main()
