//! The fill-mask pipeline against transformers' fill_mask.json: identical tokens, token strings
//! and sequences, scores within 1e-5.

mod common;

use albert::pipelines::fill_mask::fill_mask;
use albert::{Albert, Engine, Head, Tokenizer};
use common::{fixtures, model_dir};

#[test]
fn fill_mask_matches_transformers_pipeline() {
    let mut checked = 0;
    for name in fixtures() {
        let dir = model_dir(&name);
        let Ok(text) = std::fs::read_to_string(dir.join("fill_mask.json")) else {
            continue;
        };
        let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
        let model = Engine::Cpu(Albert::from_dir(&dir, Some(Head::MaskedLm)).unwrap());
        let tok = Tokenizer::from_dir(&dir).unwrap();
        let texts: Vec<String> = cases
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().into())
            .collect();
        // All texts in one padded batch: padding must not change any answer.
        let results = fill_mask(&model, &tok, &texts, 5).unwrap();
        let mut worst = 0f64;
        for (case, got) in cases.as_array().unwrap().iter().zip(&results) {
            assert_eq!(got.len(), 1, "{name}: one [MASK] per text");
            let want = case["answers"].as_array().unwrap();
            assert_eq!(got[0].len(), want.len());
            for (g, w) in got[0].iter().zip(want) {
                assert_eq!(
                    g.token,
                    w["token"].as_u64().unwrap() as u32,
                    "{name}: {}",
                    case["text"]
                );
                assert_eq!(g.token_str, w["token_str"].as_str().unwrap());
                assert_eq!(g.sequence, w["sequence"].as_str().unwrap());
                let ws = w["score"].as_f64().unwrap();
                let err = (g.score - ws).abs() / ws.abs();
                worst = worst.max(err);
                assert!(err <= 1e-5, "{name}: score {} vs {ws} ({err:.2e})", g.score);
            }
            checked += 1;
        }
        println!("{name}: worst score error {worst:.2e}");
    }
    assert!(
        checked >= 4,
        "expected fill_mask.json in at least two fixtures"
    );
}

#[test]
fn several_masks_keep_the_other_masks_in_the_sequence() {
    let dir = model_dir("tiny-albert-mlm");
    let model = Engine::Cpu(Albert::from_dir(&dir, None).unwrap());
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let out = fill_mask(&model, &tok, &["a [MASK] and a [MASK].".to_string()], 3).unwrap();
    assert_eq!(out[0].len(), 2);
    for answers in &out[0] {
        assert_eq!(answers.len(), 3);
        // transformers keeps special tokens when a text has several masks.
        assert!(answers[0].sequence.starts_with("[CLS]") && answers[0].sequence.contains("[MASK]"));
        assert!(answers[0].score >= answers[1].score && answers[1].score >= answers[2].score);
    }
}
