//! Pipeline inputs from files and stdin, and every bad input a clear error, never a panic.

mod common;
mod pipeline_util;

use albert::pipelines::embed::Pooling;
use albert::pipelines::question_answering::{self as qa, QaInput, QuestionAnsweringOptions};
use albert::pipelines::text_classification as tc;
use albert::pipelines::token_classification as ner;
use albert::pipelines::{fill_mask, Pipeline};
use albert::Error;
use common::model_dir;
use pipeline_util::*;

#[test]
fn inputs_from_files_and_stdin() {
    let dir = model_dir("tiny-albert-seqcls");
    let model = dir.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("texts.txt");
    std::fs::write(&file, format!("{}\n{}\n", TEXTS[0], TEXTS[3])).unwrap();
    let base = [
        "text-classification",
        "--model",
        model,
        "--device",
        "cpu",
        "--json",
    ];
    let from_file = json_of(&albert(
        &[&base[..], &["--file", file.to_str().unwrap()]].concat(),
        None,
    ));
    let from_stdin = json_of(&albert(
        &base,
        Some(&format!("{}\n{}\n", TEXTS[0], TEXTS[3])),
    ));
    let from_args = json_of(&albert(&[&base[..], &[TEXTS[0], TEXTS[3]]].concat(), None));
    assert_eq!(from_file, from_args);
    assert_eq!(from_stdin, from_args);
    assert!(from_args[0].is_object() && from_args.as_array().unwrap().len() == 2);
    let both = albert(
        &[&base[..], &["--file", file.to_str().unwrap(), "x"]].concat(),
        None,
    );
    assert_clean_failure(&both, &["--file"]);
    assert_clean_failure(&albert(&base, Some("")), &["no inputs"]);

    let qa_dir = model_dir("tiny-albert-qa");
    let lines = format!(
        "{}\n{}\n",
        serde_json::json!({"question": "What do plants create?", "context": TEXTS[3]}),
        serde_json::json!({"question": "Where did Marie Curie move?", "context": TEXTS[0]}),
    );
    let qa_args = [
        "question-answering",
        "--model",
        qa_dir.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        "--file",
        "-",
    ];
    let answers = json_of(&albert(&qa_args, Some(&lines)));
    assert_eq!(answers.as_array().unwrap().len(), 2);
    assert!(answers[0]["answer"].is_string());
    assert_clean_failure(
        &albert(&qa_args, Some("{\"question\": 1}\n")),
        &["stdin line 1"],
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (mlm, tok) = (
        engine("tiny-albert-mlm", None),
        tokenizer("tiny-albert-mlm"),
    );
    let e = tc::run(
        &Pipeline::new(&mlm, &tok),
        &strings(&["x"]),
        &Default::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Pipeline(_)));
    assert!(
        e.to_string().contains("AlbertForSequenceClassification")
            && e.to_string().contains("AlbertForMaskedLM")
    );
    let targets = fill_mask::FillMaskOptions {
        top_k: 5,
        targets: Some(vec!["".into()]),
    };
    let e = fill_mask::run(
        &Pipeline::new(&mlm, &tok),
        &strings(&["a [MASK]."]),
        &targets,
    )
    .unwrap_err();
    assert!(e.to_string().contains("targets"), "{e}");

    let (e, tok) = (engine("tiny-albert-qa", None), tokenizer("tiny-albert-qa"));
    let p = Pipeline::new(&e, &tok);
    let x = QaInput {
        question: "What do plants create?".into(),
        context: TEXTS[3].repeat(3),
    };
    let err = |opts: QuestionAnsweringOptions, x: &QaInput| {
        qa::run(&p, std::slice::from_ref(x), &opts)
            .unwrap_err()
            .to_string()
    };
    let d = QuestionAnsweringOptions::default;
    // 5 question tokens + 3 special tokens fill a window of 8: no room for the context.
    assert!(err(
        QuestionAnsweringOptions {
            max_seq_len: Some(8),
            doc_stride: Some(2),
            ..d()
        },
        &x
    )
    .contains("no room"));
    // 20 - 8 = 12 context tokens per window: a stride of 12 would never advance.
    assert!(err(
        QuestionAnsweringOptions {
            max_seq_len: Some(20),
            doc_stride: Some(12),
            ..d()
        },
        &x
    )
    .contains("stride 12"));
    assert!(err(
        QuestionAnsweringOptions {
            max_seq_len: Some(20),
            doc_stride: Some(30),
            ..d()
        },
        &x
    )
    .contains("doc_stride"));
    assert!(err(QuestionAnsweringOptions { top_k: 0, ..d() }, &x).contains("top_k"));
    assert!(err(
        QuestionAnsweringOptions {
            max_answer_len: 0,
            ..d()
        },
        &x
    )
    .contains("max_answer_len"));
    let empty = QaInput {
        question: "Why?".into(),
        context: String::new(),
    };
    assert!(err(d(), &empty).contains("`context` cannot be empty"));
    // handle_impossible_answer adds the empty answer to the candidates.
    let opts = QuestionAnsweringOptions {
        handle_impossible_answer: true,
        top_k: 50,
        ..d()
    };
    assert!(qa::run(&p, &[x], &opts).unwrap()[0]
        .iter()
        .any(|a| a.answer.is_empty() && a.start == 0));
    assert!("bogus".parse::<ner::Aggregation>().is_err() && "bogus".parse::<Pooling>().is_err());

    let dir = model_dir("tiny-albert-tokcls");
    let model = dir.to_str().unwrap();
    let out = albert(
        &[
            "token-classification",
            "--model",
            model,
            "--device",
            "cpu",
            "--aggregation-strategy",
            "bogus",
            "x",
        ],
        None,
    );
    assert_clean_failure(&out, &["bogus"]);
    let out = albert(
        &[
            "question-answering",
            "--model",
            model,
            "--device",
            "cpu",
            "What?",
        ],
        None,
    );
    assert_clean_failure(&out, &["--context"]);
    let mlm = model_dir("tiny-albert-mlm");
    let out = albert(
        &[
            "text-classification",
            "--model",
            mlm.to_str().unwrap(),
            "--device",
            "cpu",
            "x",
        ],
        None,
    );
    assert_clean_failure(
        &out,
        &["as AlbertForSequenceClassification", "missing tensor"],
    );
}
