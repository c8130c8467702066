//! The pipeline subcommands (fill-mask, text-classification, token-classification,
//! question-answering, multiple-choice, embed): what they share. Each reads its inputs from
//! arguments, a file or stdin, runs them in length-sorted batches with a progress bar on stderr
//! when there is more than one batch, and prints transformers' JSON with `--json`.

pub mod embed;
pub mod pairs;
pub mod text;

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use albert::pipelines::{Pipeline, DEFAULT_BATCH_SIZE};
use albert::{Albert, Compat, Engine, Head, Tokenizer};

/// The model, where it runs, how inputs are batched and how results are printed.
#[derive(Args)]
pub struct ModelArgs {
    /// A model directory, or a Hugging Face model id (org/name[@revision]) looked up in the
    /// cache under HF_HOME and downloaded there if absent (HF_HUB_OFFLINE=1: the cache only).
    #[arg(long)]
    pub model: String,
    /// auto, cpu, cpu-reference, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// f32, bf16 or f16 (default: bf16 on the GPU, f32 on the CPU).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Inputs per forward pass (inputs are sorted by length first, to pad little).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Print transformers' JSON: one input's result, or a list of results for several.
    #[arg(long)]
    pub json: bool,
}

/// Texts from arguments, or a file, or stdin, one per line.
#[derive(Args)]
pub struct TextArgs {
    /// A file with one input per line; `-` is stdin. With neither texts nor --file, stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The inputs.
    pub texts: Vec<String>,
}

impl TextArgs {
    /// The inputs, in order.
    pub fn read(&self) -> Result<Vec<String>> {
        match (&self.file, self.texts.is_empty()) {
            (Some(_), false) => bail!("give inputs as arguments or with --file, not both"),
            (Some(f), true) => read_lines(f),
            (None, false) => Ok(self.texts.clone()),
            (None, true) => read_lines(Path::new("-")),
        }
    }
}

/// Every line of `path` (`-`: stdin), without line endings.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let lines: Vec<String> = if path == Path::new("-") {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("albert: reading inputs from stdin, one per line (end with Ctrl-D)");
        }
        stdin.lock().lines().collect::<std::io::Result<_>>()
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading inputs from {}", path.display()))?;
        Ok(text.lines().map(str::to_string).collect())
    }
    .context("reading inputs")?;
    if lines.is_empty() {
        bail!("no inputs: {} is empty", display(path));
    }
    Ok(lines)
}

/// Every line of `path` (`-`: stdin) parsed as one JSON object.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: expected {what}", display(path), n + 1))
        })
        .collect()
}

fn display(path: &Path) -> String {
    match path == Path::new("-") {
        true => "stdin".into(),
        false => path.display().to_string(),
    }
}

/// `--model` as a directory: itself, or a hub id resolved through the cache.
pub fn resolve(m: &ModelArgs) -> Result<PathBuf> {
    Ok(albert::hub::resolve_model(&m.model)?)
}

/// The model in `dir` with `head`, placed on --device, and its tokenizer as transformers 4.57
/// tokenizes (the release the pipelines reproduce: see `albert::Compat`).
pub fn load(m: &ModelArgs, dir: &Path, head: Head) -> Result<(Engine, Tokenizer)> {
    let tokenizer = Tokenizer::from_dir_compat(dir, Compat::Transformers4)?;
    let model = Albert::from_dir(dir, Some(head))
        .with_context(|| format!("loading {} as {}", dir.display(), head.class_name()))?;
    let engine = crate::place(model, &m.device, m.dtype.as_deref())?;
    Ok((engine, tokenizer))
}

/// A progress bar on stderr, shown once a run needs more than one batch (and stderr is a
/// terminal: indicatif draws nothing otherwise).
pub struct Progress {
    bar: ProgressBar,
    batch_size: usize,
}

impl Progress {
    pub fn new(batch_size: usize) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} [{elapsed_precise} < {eta_precise}]",
        ) {
            bar.set_style(style);
        }
        Progress { bar, batch_size }
    }

    pub fn update(&self, done: usize, total: usize) {
        if total <= self.batch_size {
            return;
        }
        if self.bar.is_hidden() && self.bar.length().is_none() {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A pipeline over `engine` and `tokenizer` with --batch-size and a progress bar.
pub fn pipeline<'a>(
    engine: &'a Engine,
    tokenizer: &'a Tokenizer,
    m: &ModelArgs,
    progress: &'a dyn Fn(usize, usize),
) -> Pipeline<'a> {
    Pipeline {
        engine,
        tokenizer,
        batch_size: m.batch_size,
        progress: Some(progress),
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
