//! The pipelines beyond the recorded calls: batching (sorted, restored, progress), the
//! classification functions, and multiple choice and embed against the model's own outputs.

mod common;
mod pipeline_util;

use std::cell::RefCell;

use albert::pipelines::embed::{self, EmbedOptions, Pooling};
use albert::pipelines::multiple_choice::{self as mc, McInput};
use albert::pipelines::question_answering::{self as qa, QaInput, QuestionAnsweringOptions};
use albert::pipelines::text_classification::{
    self as tc, ClassificationFunction, TextClassificationOptions, TopK,
};
use albert::pipelines::token_classification::{self as ner, TokenClassificationOptions};
use albert::pipelines::{fill_mask, Pipeline};
use albert::{Albert, EncodeOptions, Head, Inputs, Padding, Tokenizer};
use common::model_dir;
use pipeline_util::*;

#[test]
fn batches_are_sorted_restored_and_reported() {
    let (e, tok) = (
        engine("tiny-albert-seqcls", None),
        tokenizer("tiny-albert-seqcls"),
    );
    let texts = strings(&TEXTS);
    let seen = RefCell::new(Vec::new());
    let record = |d, t| seen.borrow_mut().push((d, t));
    let mut p = Pipeline::new(&e, &tok);
    p.batch_size = 2;
    p.progress = Some(&record);
    let opts = TextClassificationOptions {
        top_k: TopK::All,
        ..Default::default()
    };
    let batched = tc::run(&p, &texts, &opts).unwrap();
    assert_eq!(*seen.borrow(), [(2, 5), (4, 5), (5, 5)]);
    let one = Pipeline::new(&e, &tok);
    for (text, got) in texts.iter().zip(&batched) {
        let alone = &tc::run(&one, std::slice::from_ref(text), &opts).unwrap()[0];
        assert_eq!(got.len(), 3);
        for (g, a) in got.iter().zip(alone) {
            assert!(g.label == a.label && close(g.score, a.score), "{text}");
        }
    }

    let (e, tok) = (
        engine("tiny-albert-tokcls", None),
        tokenizer("tiny-albert-tokcls"),
    );
    let mut p = Pipeline::new(&e, &tok);
    p.batch_size = 2;
    let opts = TokenClassificationOptions {
        ignore_labels: vec![],
        ..Default::default()
    };
    let batched = ner::run(&p, &texts, &opts).unwrap();
    for (text, got) in texts.iter().zip(&batched) {
        let alone = ner::run(&Pipeline::new(&e, &tok), std::slice::from_ref(text), &opts).unwrap();
        assert!(
            same(
                &ner::to_json(std::slice::from_ref(got)),
                &ner::to_json(&alone)
            ),
            "{text}"
        );
    }

    let (e, tok) = (engine("tiny-albert-qa", None), tokenizer("tiny-albert-qa"));
    let long = "Marie Curie moved from Warsaw to Paris in 1891. ".repeat(12);
    let inputs = [
        QaInput {
            question: "Where did Marie Curie move?".into(),
            context: long,
        },
        QaInput {
            question: "What do plants create?".into(),
            context: TEXTS[3].into(),
        },
    ];
    let opts = QuestionAnsweringOptions {
        max_seq_len: Some(48),
        doc_stride: Some(8),
        top_k: 2,
        ..Default::default()
    };
    let mut p = Pipeline::new(&e, &tok);
    p.batch_size = 3;
    let batched = qa::run(&p, &inputs, &opts).unwrap();
    for (x, got) in inputs.iter().zip(&batched) {
        let alone = &qa::run(&Pipeline::new(&e, &tok), std::slice::from_ref(x), &opts).unwrap()[0];
        assert_eq!(got.len(), alone.len());
        for (g, a) in got.iter().zip(alone) {
            assert!((g.start, g.end) == (a.start, a.end) && close(g.score, a.score));
        }
    }

    let (e, tok) = (
        engine("tiny-albert-mlm", None),
        tokenizer("tiny-albert-mlm"),
    );
    let texts = strings(&["a [MASK] and a [MASK].", "The [MASK] is blue.", "[MASK]."]);
    let mut p = Pipeline::new(&e, &tok);
    p.batch_size = 2;
    let batched = fill_mask::run(&p, &texts, &Default::default()).unwrap();
    assert_eq!(batched.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 1]);
    for (text, got) in texts.iter().zip(&batched) {
        let alone = fill_mask::fill_mask(&e, &tok, std::slice::from_ref(text), 5).unwrap();
        let tokens = |r: &Vec<Vec<fill_mask::FillMaskAnswer>>| {
            r.iter().flatten().map(|a| a.token).collect::<Vec<_>>()
        };
        assert_eq!(tokens(got), tokens(&alone[0]), "{text}");
    }
}

#[test]
fn text_classification_functions_and_top_k() {
    let (e, tok) = (
        engine("tiny-albert-seqcls", None),
        tokenizer("tiny-albert-seqcls"),
    );
    let mut config = e.config().clone();
    assert_eq!(
        ClassificationFunction::for_config(&config),
        ClassificationFunction::Softmax
    );
    config.problem_type = Some("multi_label_classification".into());
    assert_eq!(
        ClassificationFunction::for_config(&config),
        ClassificationFunction::Sigmoid
    );
    config.problem_type = Some("regression".into());
    assert_eq!(
        ClassificationFunction::for_config(&config),
        ClassificationFunction::None
    );
    config.problem_type = None;
    config.id2label.truncate(1);
    assert_eq!(
        ClassificationFunction::for_config(&config),
        ClassificationFunction::Sigmoid
    );

    let text = TEXTS[0].to_string();
    let enc = tok.encode(&text, None, &EncodeOptions::default()).unwrap();
    let out = e
        .forward(&Tokenizer::to_inputs(&[enc]).unwrap(), Default::default())
        .unwrap();
    let logits = &out.get("logits").unwrap().data;
    let p = Pipeline::new(&e, &tok);
    for (f, expect) in [
        (
            ClassificationFunction::Sigmoid,
            logits
                .iter()
                .map(|&x| 1.0 / (1.0 + (-(x as f64)).exp()))
                .collect::<Vec<_>>(),
        ),
        (
            ClassificationFunction::None,
            logits.iter().map(|&x| x as f64).collect(),
        ),
    ] {
        let opts = TextClassificationOptions {
            top_k: TopK::All,
            function_to_apply: Some(f),
        };
        let got = &tc::run(&p, std::slice::from_ref(&text), &opts).unwrap()[0];
        for l in got {
            let i = ["negative", "neutral", "positive"]
                .iter()
                .position(|n| *n == l.label)
                .unwrap();
            assert!(close(l.score, expect[i]), "{f:?} {}", l.label);
        }
    }
    let two = TextClassificationOptions {
        top_k: TopK::K(2),
        ..Default::default()
    };
    let got = tc::run(&p, &[text.clone(), text.clone()], &two).unwrap();
    assert!(got.iter().all(|r| r.len() == 2 && r[0].score >= r[1].score));
    // Several texts: a list of lists with top_k, a list of objects without.
    assert!(tc::to_json(&got, TopK::K(2))[0].is_array());
    assert!(tc::to_json(&got, TopK::Default)[0].is_object());
    let zero = TextClassificationOptions {
        top_k: TopK::K(0),
        ..Default::default()
    };
    assert!(tc::run(&p, &[text], &zero)
        .unwrap_err()
        .to_string()
        .contains("top_k"));
    assert!("cubic".parse::<ClassificationFunction>().is_err());
}

#[test]
fn multiple_choice_scores_each_choice() {
    let (e, tok) = (engine("tiny-albert-mc", None), tokenizer("tiny-albert-mc"));
    let prompt = "Where did Marie Curie move in 1891?";
    let choices = strings(&["To Paris.", "To the moon, by bicycle.", "Nowhere."]);
    // The model on [1, 3, S] built by hand.
    let pairs: Vec<_> = choices
        .iter()
        .map(|c| (prompt.to_string(), Some(c.clone())))
        .collect();
    let opts = EncodeOptions {
        padding: Padding::Longest,
        ..Default::default()
    };
    let flat = Tokenizer::to_inputs(&tok.encode_batch(&pairs, &opts).unwrap()).unwrap();
    let shape = [1, 3, flat.seq];
    let inputs = Inputs::new(
        flat.input_ids,
        Some(flat.attention_mask),
        Some(flat.token_type_ids),
        &shape,
    )
    .unwrap();
    let want = e
        .forward(&inputs, Default::default())
        .unwrap()
        .get("logits")
        .unwrap()
        .data
        .clone();

    let first = McInput {
        prompt: prompt.into(),
        choices: choices.clone(),
    };
    let second = McInput {
        prompt: "Pick one.".into(),
        choices: strings(&["yes", "no"]),
    };
    let mut p = Pipeline::new(&e, &tok);
    p.batch_size = 4;
    let got = mc::run(&p, &[first.clone(), second.clone(), first]).unwrap();
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2, 3]);
    for r in [&got[0], &got[2]] {
        for (s, (c, w)) in r.iter().zip(choices.iter().zip(&want)) {
            assert!(s.choice == *c && close(s.logit, *w as f64));
        }
        assert!((r.iter().map(|s| s.score).sum::<f64>() - 1.0).abs() < 1e-9);
    }
    let alone = mc::run(&Pipeline::new(&e, &tok), &[second]).unwrap();
    assert!(close(got[1][0].logit, alone[0][0].logit));

    let dir = model_dir("tiny-albert-mc");
    let mut args = vec![
        "multiple-choice",
        "--model",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        "--prompt",
        prompt,
    ];
    args.extend(choices.iter().map(String::as_str));
    let json = json_of(&albert(&args, None));
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert!(close(json[0]["logit"].as_f64().unwrap(), want[0] as f64));
    let empty = McInput {
        prompt: "p".into(),
        choices: vec![],
    };
    assert!(mc::run(&p, &[empty])
        .unwrap_err()
        .to_string()
        .contains("no choices"));
}

#[test]
fn embed_pools_the_last_hidden_state() {
    let fixture = "tiny-albert-groups"; // AlbertModel: last_hidden_state and pooler_output
    let (e, tok) = (engine(fixture, None), tokenizer(fixture));
    let text = TEXTS[3].to_string();
    let enc = tok.encode(&text, None, &EncodeOptions::default()).unwrap();
    let out = e
        .forward(
            &Tokenizer::to_inputs(std::slice::from_ref(&enc)).unwrap(),
            Default::default(),
        )
        .unwrap();
    let (hidden, pooled) = (
        &out.get("last_hidden_state").unwrap().data,
        &out.get("pooler_output").unwrap().data,
    );
    let h = e.config().hidden_size;
    let s = enc.input_ids.len();
    let p = Pipeline::new(&e, &tok);
    let run = |pooling, normalize| {
        let opts = EmbedOptions { pooling, normalize };
        embed::run(&p, &[text.clone(), "Short.".into()], &opts)
            .unwrap()
            .remove(0)
    };
    let none = run(Pooling::None, false);
    assert_eq!(none.shape, [s, h]);
    assert!(none
        .data
        .iter()
        .zip(hidden)
        .all(|(a, b)| close(*a as f64, *b as f64)));
    assert_eq!(run(Pooling::Cls, false).data, hidden[..h]);
    assert!(run(Pooling::Pooler, false)
        .data
        .iter()
        .zip(pooled)
        .all(|(a, b)| close(*a as f64, *b as f64)));
    let mean = run(Pooling::Mean, false);
    for j in [0, h / 2, h - 1] {
        let want = (0..s).map(|t| hidden[t * h + j] as f64).sum::<f64>() / s as f64;
        assert!((mean.data[j] as f64 - want).abs() < 1e-5);
    }
    let unit = run(Pooling::Mean, true);
    let norm: f64 = unit
        .data
        .iter()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-5);

    // A masked-LM checkpoint embeds with its own head, but has no pooler.
    assert_eq!(Pooling::Mean.load_head(Head::MaskedLm), Head::MaskedLm);
    assert_eq!(Pooling::Pooler.load_head(Head::MaskedLm), Head::Model);
    let mlm = Albert::from_dir(&model_dir("tiny-albert-mlm"), Some(Head::Model)).unwrap_err();
    assert!(mlm.to_string().contains("pooler"), "{mlm}");

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("emb.safetensors");
    let dir = model_dir("tiny-albert-mlm");
    let args = [
        "embed",
        "--model",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
        "--pooling",
        "mean",
        "--normalize",
        "--output",
        file.to_str().unwrap(),
        TEXTS[0],
        TEXTS[1],
    ];
    let out = albert(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = albert::io::read_f32_tensors(&file).unwrap();
    assert_eq!(t["embeddings"].shape, [2, 64]);
    let dir = model_dir(fixture);
    let json = json_of(&albert(
        &[
            "embed",
            "--model",
            dir.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
            "Short.",
        ],
        None,
    ));
    assert_eq!(json.as_array().unwrap().len(), 1); // [1, S, H], as feature-extraction
    assert_eq!(json[0][0].as_array().unwrap().len(), h);
    let out = albert(
        &[
            "embed",
            "--model",
            "../shared/models/tiny-albert-mlm",
            "--pooling",
            "pooler",
            "--device",
            "cpu",
            "x",
        ],
        None,
    );
    assert_clean_failure(&out, &["pooler"]);
}
