//! `albert bench`: the main job with no files at all.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use albert::bench::{self, BenchRow};
use albert::model::weights::Linear;
use albert::{io, Albert, AlbertConfig, Engine, Head, Outputs, Tensor};

#[derive(Args)]
pub struct BenchArgs {
    /// Model directory; default: a synthetic albert-base-v2 with seeded random weights.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8])]
    batch: Vec<usize>,
    /// Sequence lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [128usize])]
    seq: Vec<usize>,
    /// Timed iterations per row.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed iterations before timing (on a GPU the second pass of a shape captures its CUDA
    /// graph, so 2 keeps the capture out of the times).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// auto, cpu, cpu-reference, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// f32, bf16 or f16 (default: bf16 on the GPU, f32 on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Also time cuBLAS on the encoder's product shapes next to our kernels (GPU only).
    #[arg(long)]
    cublas: bool,
    /// One JSON object per row instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the model (an AlbertModel directory: config.json, model.safetensors) and the
    /// inputs the rows would time (inputs.b{B}.s{S}.safetensors) to this directory, and exit:
    /// what scripts/compare-cpu loads into transformers and ONNX Runtime.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Write every kernel launch of one eager encoder pass per row (kernel, grid, block, the
    /// FLOPs and bytes it must do at least; JSON lines) to this file, and exit:
    /// `scripts/ncu_table.py --costs FILE` sets ncu's times of the same pass against them
    /// (GPU only).
    #[arg(long)]
    kernel_costs: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let model = match &args.model {
        Some(dir) => Albert::from_dir(dir, Some(Head::Model))?,
        None => Albert::synthetic(AlbertConfig::base_v2(), Head::Model, 42),
    };
    let params = model.weights.num_params();
    if let Some(dir) = &args.export {
        return export(&model, dir, &args);
    }
    let engine = super::place(model, &args.device, args.dtype.as_deref())?;
    if let Some(path) = &args.kernel_costs {
        return kernel_costs(&engine, &args, path);
    }
    if !args.json {
        let name = args
            .model
            .as_ref()
            .map_or("synthetic albert-base-v2".into(), |d| {
                d.display().to_string()
            });
        println!("{name}: {params} params on {}", engine.describe());
        println!(
            "{:>5} {:>5} {:>7} {:>5} {:>10} {:>10} {:>10} {:>11} {:>8} {:>9} {:>11}",
            "batch",
            "seq",
            "device",
            "dtype",
            "p50 ms",
            "p90 ms",
            "seq/s",
            "tokens/s",
            "GFLOP/s",
            "peak MiB",
            "w+act MiB"
        );
    }
    for &s in &args.seq {
        for &b in &args.batch {
            let row = bench::run(&engine, b, s, args.warmup, args.iters)?;
            print_row(&row, args.json)?;
        }
    }
    if let (Some(graphs), false) = (engine.graph_status(), args.json) {
        println!("CUDA graphs: {graphs}");
    }
    if args.cublas {
        cublas_table(&engine, &args)?;
    }
    Ok(())
}

/// Our linear_forward next to cuBLAS on every product shape of the encoder.
#[cfg(feature = "cuda")]
fn cublas_table(engine: &Engine, args: &BenchArgs) -> Result<()> {
    let Engine::Cuda(m) = engine else {
        anyhow::bail!("--cublas needs the model on a GPU (--device cuda)");
    };
    let cfg = &m.config;
    let (e, h, i) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
    if !args.json {
        println!("\nproducts vs cuBLAS ({}):", m.dtype);
        println!(
            "{:>12} {:>6} {:>6} {:>6} {:>6} {:>10} {:>10} {:>7} {:>9} {:>9}",
            "op",
            "M",
            "N",
            "K",
            "splits",
            "ours us",
            "cuBLAS us",
            "ratio",
            "ours TF/s",
            "cuBLAS TF/s"
        );
    }
    for &s in &args.seq {
        for &b in &args.batch {
            let rows = b * s;
            // The two products that feed a LayerNorm run split over K in the engine.
            let split = albert::backend::cuda::CudaDevice::output_splits;
            let shapes = [
                ("projection", rows, h, e, 1),
                ("qkv", rows, 3 * h, h, 1), // the fused [3H, H] product
                ("attn_output", rows, h, h, split(h)),
                ("ffn", rows, i, h, 1),
                ("ffn_output", rows, h, i, split(i)),
            ];
            for (name, mm, n, k, splits) in shapes {
                use albert::backend::cuda::cublas::compare_gemm;
                let t = compare_gemm(&m.dev, name, (mm, n, k), m.dtype, splits)?;
                if args.json {
                    println!("{}", serde_json::to_string(&t)?);
                } else {
                    println!(
                        "{:>12} {:>6} {:>6} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>9.1} {:>9.1}",
                        t.name,
                        t.m,
                        t.n,
                        t.k,
                        t.splits,
                        t.ours_us,
                        t.cublas_us,
                        t.ratio,
                        t.ours_tflops,
                        t.cublas_tflops
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cublas_table(_engine: &Engine, _args: &BenchArgs) -> Result<()> {
    anyhow::bail!("--cublas needs the CUDA backend (this build has no `cuda` feature)")
}

/// One eager pass per row with every launch's cost logged, as JSON lines with the row's batch
/// and seq and the launch's index in the pass.
#[cfg(feature = "cuda")]
fn kernel_costs(engine: &Engine, args: &BenchArgs, path: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    let Engine::Cuda(m) = engine else {
        anyhow::bail!("--kernel-costs needs the model on a GPU (--device cuda)");
    };
    let mut lines = String::new();
    for &s in &args.seq {
        for &b in &args.batch {
            let inputs = bench::random_inputs(&m.config, b, s, bench::INPUT_SEED)?;
            for (i, launch) in m.kernel_costs(&inputs)?.into_iter().enumerate() {
                let mut v = serde_json::to_value(launch)?;
                v["batch"] = b.into();
                v["seq"] = s.into();
                v["launch"] = i.into();
                lines += &format!("{v}\n");
            }
        }
    }
    std::fs::write(path, lines).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(not(feature = "cuda"))]
fn kernel_costs(_engine: &Engine, _args: &BenchArgs, _path: &std::path::Path) -> Result<()> {
    anyhow::bail!("--kernel-costs needs the CUDA backend (this build has no `cuda` feature)")
}

/// Writes `model` as a Hugging Face AlbertModel directory and the bench inputs of every row.
fn export(model: &Albert, dir: &std::path::Path, args: &BenchArgs) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let c = &model.config;
    let config = serde_json::json!({
        "architectures": ["AlbertModel"],
        "model_type": "albert",
        "vocab_size": c.vocab_size,
        "embedding_size": c.embedding_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_hidden_groups": c.num_hidden_groups,
        "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "inner_group_num": c.inner_group_num,
        "hidden_act": c.hidden_act_name,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "classifier_dropout_prob": 0.0,
        "pad_token_id": c.pad_token_id,
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let w = &model.weights;
    let mut out = Outputs::default();
    let (v, e, h) = (c.vocab_size, c.embedding_size, c.hidden_size);
    let emb = &w.embeddings;
    put(
        &mut out,
        "embeddings.word_embeddings.weight",
        vec![v, e],
        &emb.word,
    );
    let p = c.max_position_embeddings;
    put(
        &mut out,
        "embeddings.position_embeddings.weight",
        vec![p, e],
        &emb.position,
    );
    let t = c.type_vocab_size;
    put(
        &mut out,
        "embeddings.token_type_embeddings.weight",
        vec![t, e],
        &emb.token_type,
    );
    put(
        &mut out,
        "embeddings.LayerNorm.weight",
        vec![e],
        &emb.norm.weight,
    );
    put(
        &mut out,
        "embeddings.LayerNorm.bias",
        vec![e],
        &emb.norm.bias,
    );
    put_linear(
        &mut out,
        "encoder.embedding_hidden_mapping_in",
        &emb.projection,
    );
    for (g, layers) in w.groups.iter().enumerate() {
        for (j, l) in layers.iter().enumerate() {
            let p = format!("encoder.albert_layer_groups.{g}.albert_layers.{j}");
            put_linear(&mut out, &format!("{p}.attention.query"), &l.query);
            put_linear(&mut out, &format!("{p}.attention.key"), &l.key);
            put_linear(&mut out, &format!("{p}.attention.value"), &l.value);
            put_linear(&mut out, &format!("{p}.attention.dense"), &l.attn_output);
            let n = &l.attn_norm;
            put(
                &mut out,
                &format!("{p}.attention.LayerNorm.weight"),
                vec![h],
                &n.weight,
            );
            put(
                &mut out,
                &format!("{p}.attention.LayerNorm.bias"),
                vec![h],
                &n.bias,
            );
            put_linear(&mut out, &format!("{p}.ffn"), &l.ffn);
            put_linear(&mut out, &format!("{p}.ffn_output"), &l.ffn_output);
            let n = &l.output_norm;
            put(
                &mut out,
                &format!("{p}.full_layer_layer_norm.weight"),
                vec![h],
                &n.weight,
            );
            put(
                &mut out,
                &format!("{p}.full_layer_layer_norm.bias"),
                vec![h],
                &n.bias,
            );
        }
    }
    if let Some(p) = &w.pooler {
        put_linear(&mut out, "pooler", p);
    }
    io::write_outputs(&dir.join("model.safetensors"), &out)?;
    for &s in &args.seq {
        for &b in &args.batch {
            let inputs = bench::random_inputs(c, b, s, bench::INPUT_SEED)?;
            io::write_inputs(&dir.join(format!("inputs.b{b}.s{s}.safetensors")), &inputs)?;
        }
    }
    eprintln!(
        "wrote {} (config.json, model.safetensors, inputs)",
        dir.display()
    );
    Ok(())
}

fn put(out: &mut Outputs, name: &str, shape: Vec<usize>, data: &[f32]) {
    out.push(name, Tensor::new(shape, data.to_vec()));
}

fn put_linear(out: &mut Outputs, prefix: &str, l: &Linear) {
    let shape = vec![l.out_features, l.in_features];
    put(out, &format!("{prefix}.weight"), shape, &l.weight);
    put(
        out,
        &format!("{prefix}.bias"),
        vec![l.out_features],
        &l.bias,
    );
}

fn print_row(r: &BenchRow, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{:>5} {:>5} {:>7} {:>5} {:>10.2} {:>10.2} {:>10.2} {:>11.0} {:>8.1} {:>9.1} {:>11.1}",
            r.batch,
            r.seq,
            r.device,
            r.dtype,
            r.p50_ms,
            r.p90_ms,
            r.seqs_per_s,
            r.tokens_per_s,
            r.gflops,
            r.peak_rss_mib,
            r.weights_mib + r.activations_mib
        );
    }
    Ok(())
}
