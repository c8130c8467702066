"""Times Hugging Face transformers' AlbertModel (random albert-base-v2 weights) on the GPU, the
rival `albert bench --device cuda` is compared with. Same shapes, same kind of inputs (random
ids, no padding), CUDA events, median of the timed runs after warm-up. One JSON line per row.

Usage (on the GPU machine): python3 scripts/bench_transformers.py [--iters 50]
"""
import argparse
import json

import torch
from transformers import AlbertConfig, AlbertModel

SHAPES = [(1, 128), (8, 128), (32, 128), (1, 512)]


def bench(model, batch, seq, iters, warmup=10):
    ids = torch.randint(5, 30000, (batch, seq), device="cuda")
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        for _ in range(warmup):
            model(input_ids=ids, attention_mask=mask)
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            model(input_ids=ids, attention_mask=mask)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    for impl in ["eager", "sdpa"]:
        for dtype in [torch.bfloat16]:
            config = AlbertConfig(hidden_size=768, num_attention_heads=12, intermediate_size=3072)
            config._attn_implementation = impl
            model = AlbertModel(config, add_pooling_layer=False).to("cuda", dtype).eval()
            try:  # transformers 5 switches the attention function here
                model.set_attn_implementation(impl)
            except (AttributeError, ValueError) as e:
                print(f"# set_attn_implementation({impl}): {e}", flush=True)
            for batch, seq in SHAPES:
                ms = bench(model, batch, seq, args.iters)
                print(json.dumps({"engine": f"transformers-{impl}", "dtype": "bf16", "batch": batch,
                                  "seq": seq, "p50_ms": ms, "device": torch.cuda.get_device_name()}),
                      flush=True)


if __name__ == "__main__":
    main()
