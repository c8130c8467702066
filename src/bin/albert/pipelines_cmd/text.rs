//! fill-mask, text-classification and token-classification: one text per input.

use anyhow::{bail, Result};
use clap::Args;

use albert::pipelines::fill_mask::{self, FillMaskOptions};
use albert::pipelines::text_classification::{self as tc, TextClassificationOptions, TopK};
use albert::pipelines::token_classification::{self as ner, Entity, TokenClassificationOptions};
use albert::Head;

use super::{load, pipeline, print_json, resolve, ModelArgs, Progress, TextArgs};

#[derive(Args)]
pub struct FillMaskArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Answers per [MASK] (at most the number of --targets).
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Score only these tokens (comma-separated); a word that is not one token counts as its
    /// first token, as in transformers.
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Texts containing [MASK].
    #[command(flatten)]
    pub inputs: TextArgs,
}

pub fn fill_mask(a: FillMaskArgs) -> Result<()> {
    let texts = a.inputs.read()?;
    let dir = resolve(&a.model)?;
    let (engine, tokenizer) = load(&a.model, &dir, Head::MaskedLm)?;
    let progress = Progress::new(a.model.batch_size);
    let update = |d, t| progress.update(d, t);
    let p = pipeline(&engine, &tokenizer, &a.model, &update);
    let opts = FillMaskOptions {
        top_k: a.top_k,
        targets: a.targets,
    };
    let results = fill_mask::run(&p, &texts, &opts)?;
    drop(progress);
    if a.model.json {
        let per_text: Vec<_> = results.iter().map(|r| fill_mask::to_json(r)).collect();
        return print_json(&match per_text.as_slice() {
            [one] => one.clone(),
            _ => serde_json::Value::Array(per_text),
        });
    }
    for (text, masks) in texts.iter().zip(&results) {
        println!("{text}");
        for (m, answers) in masks.iter().enumerate() {
            for x in answers {
                println!(
                    "  mask {m}  {:.6}  {:>6}  {:<16} {}",
                    x.score, x.token, x.token_str, x.sequence
                );
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct TextClassificationArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Labels per text: a number, or `all`. Without it, the best label (and in JSON one object
    /// per text, transformers' default shape).
    #[arg(long)]
    pub top_k: Option<String>,
    /// sigmoid, softmax or none (default: transformers' choice from problem_type and
    /// num_labels).
    #[arg(long)]
    pub function_to_apply: Option<String>,
    #[command(flatten)]
    pub inputs: TextArgs,
}

pub fn text_classification(a: TextClassificationArgs) -> Result<()> {
    let top_k = match a.top_k.as_deref() {
        None => TopK::Default,
        Some("all" | "none" | "null") => TopK::All,
        Some(k) => match k.parse::<usize>() {
            Ok(k) => TopK::K(k),
            Err(_) => bail!("--top-k {k}: expected a number or `all`"),
        },
    };
    let function_to_apply = a.function_to_apply.as_deref().map(str::parse).transpose()?;
    let texts = a.inputs.read()?;
    let dir = resolve(&a.model)?;
    let (engine, tokenizer) = load(&a.model, &dir, Head::SequenceClassification)?;
    let progress = Progress::new(a.model.batch_size);
    let update = |d, t| progress.update(d, t);
    let p = pipeline(&engine, &tokenizer, &a.model, &update);
    let opts = TextClassificationOptions {
        top_k,
        function_to_apply,
    };
    let results = tc::run(&p, &texts, &opts)?;
    drop(progress);
    if a.model.json {
        return print_json(&tc::to_json(&results, top_k));
    }
    for (text, labels) in texts.iter().zip(&results) {
        println!("{text}");
        for l in labels {
            println!("  {:<20} {:.6}", l.label, l.score);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct TokenClassificationArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// none, simple, first, average or max.
    #[arg(long, default_value = "none")]
    pub aggregation_strategy: String,
    /// Labels to leave out, comma-separated (`--ignore-labels ""` keeps every label).
    #[arg(long, value_delimiter = ',', default_value = "O")]
    pub ignore_labels: Vec<String>,
    #[command(flatten)]
    pub inputs: TextArgs,
}

pub fn token_classification(a: TokenClassificationArgs) -> Result<()> {
    let opts = TokenClassificationOptions {
        aggregation: a.aggregation_strategy.parse()?,
        ignore_labels: a
            .ignore_labels
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect(),
    };
    let texts = a.inputs.read()?;
    let dir = resolve(&a.model)?;
    let (engine, tokenizer) = load(&a.model, &dir, Head::TokenClassification)?;
    let progress = Progress::new(a.model.batch_size);
    let update = |d, t| progress.update(d, t);
    let p = pipeline(&engine, &tokenizer, &a.model, &update);
    let results = ner::run(&p, &texts, &opts)?;
    drop(progress);
    if a.model.json {
        return print_json(&ner::to_json(&results));
    }
    for (text, entities) in texts.iter().zip(&results) {
        println!("{text}");
        for e in entities {
            let (label, score, word, start, end) = match e {
                Entity::Token {
                    entity,
                    score,
                    word,
                    start,
                    end,
                    ..
                } => (entity, score, word, start, end),
                Entity::Group {
                    entity_group,
                    score,
                    word,
                    start,
                    end,
                } => (entity_group, score, word, start, end),
            };
            let span = format!("{start}..{end}");
            println!("  {label:<10} {score:.4} {span:>9}  {word}");
        }
    }
    Ok(())
}
