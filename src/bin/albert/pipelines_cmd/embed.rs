//! embed: feature extraction, as JSON or into a safetensors file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use albert::pipelines::embed::{self, EmbedOptions, Pooling};
use albert::{io, AlbertConfig, Outputs, Tensor};

use super::{load, pipeline, print_json, resolve, ModelArgs, Progress, TextArgs};

#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// none (every token's last hidden state), cls, mean (over the attention mask) or pooler.
    #[arg(long, default_value = "none")]
    pub pooling: String,
    /// Scale every vector to unit L2 norm.
    #[arg(long)]
    pub normalize: bool,
    /// Write a safetensors file: `embeddings` [N, H] when pooled, else `last_hidden_state`
    /// [N, S, H] and `attention_mask` [N, S] (float 0/1), right-padded to the longest text.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: TextArgs,
}

pub fn run(a: EmbedArgs) -> Result<()> {
    let opts = EmbedOptions {
        pooling: a.pooling.parse()?,
        normalize: a.normalize,
    };
    let texts = a.inputs.read()?;
    let dir = resolve(&a.model)?;
    let checkpoint_head = AlbertConfig::from_file(&dir.join("config.json"))?.default_head()?;
    let head = opts.pooling.load_head(checkpoint_head);
    let (engine, tokenizer) = load(&a.model, &dir, head)?;
    let progress = Progress::new(a.model.batch_size);
    let update = |d, t| progress.update(d, t);
    let p = pipeline(&engine, &tokenizer, &a.model, &update);
    let results = embed::run(&p, &texts, &opts)?;
    drop(progress);
    if let Some(path) = &a.output {
        io::write_outputs(path, &to_outputs(&results, opts.pooling))?;
        eprintln!("wrote {} ({} texts)", path.display(), results.len());
    }
    if a.model.json {
        return print_json(&embed::to_json(&results));
    }
    if a.output.is_none() {
        for (text, t) in texts.iter().zip(&results) {
            let head: Vec<String> = t.data.iter().take(4).map(|v| format!("{v:.5}")).collect();
            println!("{:?} [{} ...]  {text}", t.shape, head.join(" "));
        }
    }
    Ok(())
}

/// The tensors `--output` writes.
fn to_outputs(results: &[Tensor], pooling: Pooling) -> Outputs {
    let mut out = Outputs::default();
    let n = results.len();
    if pooling != Pooling::None {
        let h = results.first().map_or(0, |t| t.data.len());
        let data = results
            .iter()
            .flat_map(|t| t.data.iter().copied())
            .collect();
        out.push("embeddings", Tensor::new(vec![n, h], data));
        return out;
    }
    let s = results.iter().map(|t| t.shape[0]).max().unwrap_or(0);
    let h = results.first().map_or(0, |t| t.shape[1]);
    let (mut hidden, mut mask) = (vec![0f32; n * s * h], vec![0f32; n * s]);
    for (i, t) in results.iter().enumerate() {
        hidden[i * s * h..i * s * h + t.data.len()].copy_from_slice(&t.data);
        mask[i * s..i * s + t.shape[0]].fill(1.0);
    }
    out.push("last_hidden_state", Tensor::new(vec![n, s, h], hidden));
    out.push("attention_mask", Tensor::new(vec![n, s], mask));
    out
}
