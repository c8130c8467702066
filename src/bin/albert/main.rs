//! The `albert` command: forward passes on safetensors inputs, the pipelines (fill-mask,
//! text-classification, token-classification, question-answering, multiple-choice, embed),
//! tokenize, bench.

mod bench_cmd;
mod pipelines_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use albert::backend::DeviceRequest;
use albert::{
    io, Albert, DType, EncodeOptions, Engine, ForwardOptions, Head, Padding, Tokenizer, Truncation,
};

#[derive(Parser)]
#[command(
    name = "albert",
    version,
    about = "ALBERT inference, exactly as transformers computes it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Refuse forward passes of more than this many token positions (batch x sequence, padding
    /// included), before allocating anything for them.
    #[arg(long, global = true, default_value_t = albert::limits::DEFAULT_MAX_TOKENS)]
    max_tokens: usize,
}

/// --max-tokens, for `place` (set once, before any command runs).
static LIMITS: std::sync::OnceLock<albert::Limits> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Command {
    /// Run the model on input_ids (+ attention_mask, token_type_ids) from a safetensors file.
    Forward {
        /// Hugging Face model directory (config.json, model.safetensors), or a model id.
        #[arg(long)]
        model: String,
        /// safetensors file with input_ids [B,S] (or [B,C,S] for multiple choice), int64 or int32.
        #[arg(long)]
        inputs: PathBuf,
        /// Where to write the float32 outputs.
        #[arg(long)]
        output: PathBuf,
        /// Head class (e.g. AlbertForMaskedLM); default: config.json's `architectures`.
        #[arg(long)]
        head: Option<String>,
        /// auto, cpu, cpu-reference, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// f32, bf16 or f16 (default: bf16 on the GPU, f32 on the CPU).
        #[arg(long)]
        dtype: Option<String>,
        /// Also write hidden_states.0 .. hidden_states.N.
        #[arg(long)]
        hidden_states: bool,
    },
    /// Predict the tokens behind each [MASK], as transformers' fill-mask pipeline.
    FillMask(pipelines_cmd::text::FillMaskArgs),
    /// Label texts, as transformers' text-classification pipeline.
    TextClassification(pipelines_cmd::text::TextClassificationArgs),
    /// Label tokens or entities, as transformers' token-classification (NER) pipeline.
    TokenClassification(pipelines_cmd::text::TokenClassificationArgs),
    /// Answer questions from a context, as transformers' question-answering pipeline.
    QuestionAnswering(pipelines_cmd::pairs::QuestionAnsweringArgs),
    /// Score the choices that answer or complete a prompt (AlbertForMultipleChoice).
    MultipleChoice(pipelines_cmd::pairs::MultipleChoiceArgs),
    /// Hidden states or pooled sentence vectors (transformers' feature-extraction pipeline).
    Embed(pipelines_cmd::embed::EmbedArgs),
    /// Show how a text (or a pair) is tokenized.
    Tokenize {
        /// Model or tokenizer directory (tokenizer.json), or a model id.
        #[arg(long)]
        model: String,
        /// Second sequence of a pair.
        #[arg(long)]
        pair: Option<String>,
        /// Truncate to this many tokens (special tokens included).
        #[arg(long)]
        max_length: Option<usize>,
        /// longest_first, only_first, only_second, or none (default: longest_first when
        /// --max-length is given).
        #[arg(long)]
        truncation: Option<String>,
        /// Pad to --max-length.
        #[arg(long)]
        pad: bool,
        #[arg(long)]
        json: bool,
        text: String,
    },
    /// Time the encoder; with no --model, a synthetic albert-base-v2 made in-process.
    Bench(bench_cmd::BenchArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let _ = LIMITS.set(albert::Limits {
        max_tokens: cli.max_tokens,
    });
    match cli.command {
        Command::Forward {
            model,
            inputs,
            output,
            head,
            device,
            dtype,
            hidden_states,
        } => {
            let head = head.as_deref().map(Head::from_name).transpose()?;
            let model = albert::hub::resolve_model(&model)?;
            let model = place(Albert::from_dir(&model, head)?, &device, dtype.as_deref())?;
            let inputs = io::read_inputs(&inputs)?;
            let out = model.forward(&inputs, ForwardOptions { hidden_states })?;
            io::write_outputs(&output, &out)?;
            let names: Vec<&str> = out.names().collect();
            eprintln!("wrote {} ({})", output.display(), names.join(", "));
        }
        Command::FillMask(a) => pipelines_cmd::text::fill_mask(a)?,
        Command::TextClassification(a) => pipelines_cmd::text::text_classification(a)?,
        Command::TokenClassification(a) => pipelines_cmd::text::token_classification(a)?,
        Command::QuestionAnswering(a) => pipelines_cmd::pairs::question_answering(a)?,
        Command::MultipleChoice(a) => pipelines_cmd::pairs::multiple_choice(a)?,
        Command::Embed(a) => pipelines_cmd::embed::run(a)?,
        Command::Tokenize {
            model,
            pair,
            max_length,
            truncation,
            pad,
            json,
            text,
        } => {
            let tokenizer = Tokenizer::from_dir(&albert::hub::resolve_model(&model)?)?;
            let truncation = match truncation.as_deref() {
                None if max_length.is_some() => Truncation::LongestFirst,
                None | Some("none") => Truncation::None,
                Some("longest_first") => Truncation::LongestFirst,
                Some("only_first") => Truncation::OnlyFirst,
                Some("only_second") => Truncation::OnlySecond,
                Some(other) => anyhow::bail!(
                    "--truncation {other}: expected longest_first, only_first, only_second or none"
                ),
            };
            let padding = if pad {
                Padding::MaxLength
            } else {
                Padding::None
            };
            let opts = EncodeOptions {
                padding,
                truncation,
                max_length,
            };
            let enc = tokenizer.encode(&text, pair.as_deref(), &opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&enc)?);
            } else {
                println!(
                    "{:>4} {:>7} {:>4} {:>4} {:>10}  token",
                    "pos", "id", "type", "mask", "chars"
                );
                for i in 0..enc.input_ids.len() {
                    let (a, b) = enc.offsets[i];
                    println!(
                        "{i:>4} {:>7} {:>4} {:>4} {:>10}  {}",
                        enc.input_ids[i],
                        enc.token_type_ids[i],
                        enc.attention_mask[i],
                        format!("{a}..{b}"),
                        enc.tokens[i]
                    );
                }
            }
        }
        Command::Bench(args) => bench_cmd::run(args)?,
    }
    Ok(())
}

/// Puts the model on --device in --dtype; prints the one-line notice when `auto` does not pick
/// the GPU.
fn place(model: Albert, device: &str, dtype: Option<&str>) -> Result<Engine> {
    let request: DeviceRequest = device.parse().context("--device")?;
    let dtype = dtype
        .map(str::parse::<DType>)
        .transpose()
        .context("--dtype")?;
    let model = model.with_limits(LIMITS.get().copied().unwrap_or_default());
    let (engine, notice) = Engine::new(model, request, dtype)?;
    if let Some(n) = notice {
        eprintln!("albert: {n}");
    }
    Ok(engine)
}
