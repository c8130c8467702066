//! question-answering and multiple-choice: inputs made of several texts, given as arguments or
//! as JSON lines ({"question", "context"}; {"prompt", "choices"}).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use albert::pipelines::multiple_choice::{self as mc, McInput};
use albert::pipelines::question_answering::{self as qa, QaInput, QuestionAnsweringOptions};
use albert::Head;

use super::{load, pipeline, print_json, read_json_lines, resolve, ModelArgs, Progress};

#[derive(Args)]
pub struct QuestionAnsweringArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The context the questions are answered from.
    #[arg(long)]
    pub context: Option<String>,
    /// Read the context from this file.
    #[arg(long, conflicts_with = "context")]
    pub context_file: Option<PathBuf>,
    /// JSON lines, one {"question": ..., "context": ...} per line (`-`: stdin).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Answers per question.
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 15)]
    pub max_answer_len: usize,
    /// Tokens per window of a long context (default: min(model_max_length, 384)).
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Overlap of windows, in tokens (default: min(max_seq_len / 2, 128)).
    #[arg(long)]
    pub doc_stride: Option<usize>,
    /// Also offer the empty answer "no answer in the context".
    #[arg(long)]
    pub handle_impossible_answer: bool,
    /// Keep answers to token boundaries instead of widening them to whole words.
    #[arg(long)]
    pub no_align_to_words: bool,
    /// Questions about --context.
    pub questions: Vec<String>,
}

pub fn question_answering(a: QuestionAnsweringArgs) -> Result<()> {
    let context = match (&a.context, &a.context_file) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the context from {}", f.display()))?,
        ),
        (None, None) => None,
    };
    let inputs: Vec<QaInput> = match (&a.file, context, a.questions.is_empty()) {
        (Some(f), None, true) => read_json_lines(f, r#"{"question": ..., "context": ...}"#)?,
        (None, Some(context), false) => a
            .questions
            .iter()
            .map(|q| QaInput {
                question: q.clone(),
                context: context.clone(),
            })
            .collect(),
        _ => bail!("give questions and --context (or --context-file), or --file with JSON lines"),
    };
    let opts = QuestionAnsweringOptions {
        top_k: a.top_k,
        max_answer_len: a.max_answer_len,
        max_seq_len: a.max_seq_len,
        doc_stride: a.doc_stride,
        handle_impossible_answer: a.handle_impossible_answer,
        align_to_words: !a.no_align_to_words,
    };
    let dir = resolve(&a.model)?;
    let (engine, tokenizer) = load(&a.model, &dir, Head::QuestionAnswering)?;
    let progress = Progress::new(a.model.batch_size);
    let update = |d, t| progress.update(d, t);
    let p = pipeline(&engine, &tokenizer, &a.model, &update);
    let results = qa::run(&p, &inputs, &opts)?;
    drop(progress);
    if a.model.json {
        return print_json(&qa::to_json(&results));
    }
    for (x, answers) in inputs.iter().zip(&results) {
        println!("{}", x.question);
        for ans in answers {
            let span = format!("{}..{}", ans.start, ans.end);
            println!("  {:.6} {span:>11}  {:?}", ans.score, ans.answer);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct MultipleChoiceArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (question or start of a sentence) the choices answer or complete.
    #[arg(long)]
    pub prompt: Option<String>,
    /// JSON lines, one {"prompt": ..., "choices": [...]} per line (`-`: stdin).
    #[arg(long, conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// The choices for --prompt.
    pub choices: Vec<String>,
}

pub fn multiple_choice(a: MultipleChoiceArgs) -> Result<()> {
    let inputs: Vec<McInput> = match (&a.file, &a.prompt) {
        (Some(f), None) if a.choices.is_empty() => {
            read_json_lines(f, r#"{"prompt": ..., "choices": [...]}"#)?
        }
        (None, Some(prompt)) if !a.choices.is_empty() => vec![McInput {
            prompt: prompt.clone(),
            choices: a.choices.clone(),
        }],
        _ => bail!("give --prompt and its choices, or --file with JSON lines"),
    };
    let dir = resolve(&a.model)?;
    let (engine, tokenizer) = load(&a.model, &dir, Head::MultipleChoice)?;
    let progress = Progress::new(a.model.batch_size);
    let update = |d, t| progress.update(d, t);
    let p = pipeline(&engine, &tokenizer, &a.model, &update);
    let results = mc::run(&p, &inputs)?;
    drop(progress);
    if a.model.json {
        return print_json(&mc::to_json(&results));
    }
    for (x, scores) in inputs.iter().zip(&results) {
        println!("{}", x.prompt);
        for s in scores {
            println!("  {:.6}  {:>9.4}  {}", s.score, s.logit, s.choice);
        }
    }
    Ok(())
}
