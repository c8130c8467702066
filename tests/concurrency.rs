//! One loaded model shared by many threads: every output bit for bit equal to the same request
//! run alone, on every CPU engine; and a sequence gives the same outputs alone or padded inside
//! a batch of longer sequences (batch invariance, bit for bit on the CPU).

mod common;

use std::sync::Arc;

use albert::{
    Albert, DType, EncodeOptions, Engine, ForwardOptions, Inputs, Outputs, Padding, Tokenizer,
};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn shared_types_are_send_and_sync() {
    assert_send_sync::<Albert>();
    assert_send_sync::<Engine>();
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<albert::backend::cpu::fast::FastAlbert>();
    #[cfg(feature = "cuda")]
    assert_send_sync::<albert::backend::cuda::CudaAlbert>();
}

/// The CPU engines: reference, fast f32, fast bf16.
fn engines(model: &str) -> Vec<(String, Engine)> {
    let m = Albert::from_dir(&common::model_dir(model), None).unwrap();
    let fast = |d| {
        Engine::CpuFast(Box::new(
            albert::backend::cpu::fast::FastAlbert::new(m.clone(), d).unwrap(),
        ))
    };
    vec![
        ("reference".into(), Engine::Cpu(m.clone())),
        ("fast f32".into(), fast(DType::F32)),
        ("fast bf16".into(), fast(DType::BF16)),
    ]
}

fn bits(out: &Outputs) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    out.tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                t.data.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

/// Requests of different batch sizes and lengths, tokenized from real text.
fn requests(tok: &Tokenizer) -> Vec<Inputs> {
    let texts = [
        "The capital of France is Paris.",
        "ALBERT shares one layer's weights across every layer of the encoder, so it is small.",
        "Short.",
        "A much longer sentence about nothing in particular, which goes on and on for a while \
         so that it needs many more tokens than the others do.",
        "Tokyo, Osaka and Kyoto.",
    ];
    let opts = EncodeOptions {
        padding: Padding::Longest,
        ..Default::default()
    };
    (0..8)
        .map(|k| {
            let batch: Vec<(String, Option<String>)> = (0..1 + k % 3)
                .map(|j| (texts[(k + 2 * j) % texts.len()].to_string(), None))
                .collect();
            Tokenizer::to_inputs(&tok.encode_batch(&batch, &opts).unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn threads_sharing_one_model_get_bit_identical_outputs() {
    let (threads, rounds) = (8, 3);
    let tok = Tokenizer::from_dir(&common::model_dir("tiny-albert-mlm")).unwrap();
    let reqs = requests(&tok);
    for (name, engine) in engines("tiny-albert-mlm") {
        let alone: Vec<_> = reqs
            .iter()
            .map(|r| bits(&engine.forward(r, ForwardOptions::default()).unwrap()))
            .collect();
        let engine = Arc::new(engine);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (engine, reqs, alone, name) = (engine.clone(), &reqs, &alone, &name);
                scope.spawn(move || {
                    for round in 0..rounds {
                        // Each thread walks the requests in its own order.
                        for k in 0..reqs.len() {
                            let i = (k * (t + 1) + round) % reqs.len();
                            let out = engine.forward(&reqs[i], ForwardOptions::default()).unwrap();
                            assert!(
                                bits(&out) == alone[i],
                                "{name}: thread {t}, round {round}: request {i} differs from alone"
                            );
                        }
                    }
                });
            }
        });
    }
}

#[test]
fn threads_sharing_one_tokenizer_get_identical_encodings() {
    let tok = Tokenizer::from_dir(&common::shared().join("albert-tokenizer")).unwrap();
    let settings: Vec<EncodeOptions> = (0..6)
        .map(|k| EncodeOptions {
            padding: [Padding::None, Padding::Longest, Padding::MaxLength][k % 3],
            truncation: [albert::Truncation::None, albert::Truncation::LongestFirst][k % 2],
            max_length: Some(6 + 3 * k),
        })
        .collect();
    let batch: Vec<(String, Option<String>)> = vec![
        (
            "Where is the [MASK] of France?".into(),
            Some("Paris is its capital.".into()),
        ),
        ("naïve café, 東京!".into(), None),
    ];
    let alone: Vec<_> = settings
        .iter()
        .map(|o| tok.encode_batch(&batch, o).unwrap())
        .collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (tok, settings, alone, batch) = (&tok, &settings, &alone, &batch);
            scope.spawn(move || {
                for round in 0..50 {
                    let k = (t + round) % settings.len();
                    assert_eq!(tok.encode_batch(batch, &settings[k]).unwrap(), alone[k]);
                }
            });
        }
    });
}

/// Row `row` of every output of `out`, restricted to the first `len` positions where the output
/// has a position axis ([B, S, ...]); pooled outputs ([B, ...]) whole.
fn row_bits(out: &Outputs, row: usize, len: usize, seq: usize) -> Vec<(String, Vec<u32>)> {
    out.tensors
        .iter()
        .map(|(n, t)| {
            let per_row = t.data.len() / t.shape[0];
            let data = &t.data[row * per_row..(row + 1) * per_row];
            let data = match t.shape.get(1) {
                Some(&s) if s == seq && t.shape.len() >= 3 => &data[..len * (per_row / seq)],
                Some(&s) if s == seq && t.shape.len() == 2 => &data[..len],
                _ => data,
            };
            (n.clone(), data.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

#[test]
fn a_sequence_alone_equals_it_padded_in_a_batch() {
    let tok = Tokenizer::from_dir(&common::shared().join("albert-tokenizer")).unwrap();
    let short = "Paris is the capital of France.";
    let longer = [
        "ALBERT shares one layer's weights across every layer of the encoder, so it is small.",
        "A much longer sentence about nothing in particular, which goes on for a while.",
    ];
    let enc = |texts: &[&str]| {
        let batch: Vec<(String, Option<String>)> =
            texts.iter().map(|t| (t.to_string(), None)).collect();
        let opts = EncodeOptions {
            padding: Padding::Longest,
            ..Default::default()
        };
        Tokenizer::to_inputs(&tok.encode_batch(&batch, &opts).unwrap()).unwrap()
    };
    let alone = enc(&[short]);
    let batch = enc(&[longer[0], short, longer[1]]);
    let len = alone.seq;
    assert!(batch.seq > len + 5, "the batch must pad the short sequence");
    let opts = ForwardOptions {
        hidden_states: true,
    };
    for model in [
        "tiny-albert-mlm",
        "tiny-albert-seqcls",
        "tiny-albert-tokcls",
        "tiny-albert-groups",
    ] {
        for (name, engine) in engines(model) {
            let a = engine.forward(&alone, opts).unwrap();
            let b = engine.forward(&batch, opts).unwrap();
            let (a, b) = (
                row_bits(&a, 0, len, alone.seq),
                row_bits(&b, 1, len, batch.seq),
            );
            for ((na, va), (_, vb)) in a.iter().zip(&b) {
                let first = va.iter().zip(vb).position(|(x, y)| x != y);
                assert!(
                    first.is_none(),
                    "{model} {name}: {na} differs alone vs in a batch at element {first:?}"
                );
            }
        }
    }
}
