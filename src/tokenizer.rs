//! The ALBERT tokenizer: a `tokenizer.json` run by the `tokenizers` crate, called the way
//! transformers' AlbertTokenizerFast calls it, so ids, tokens, masks, offsets and decoded text
//! are identical (tests/tokenizer_cases.rs checks every case of shared/albert-tokenizer).
//!
//! Design notes:
//! - Truncation and padding are per call, as in transformers: the file's own settings are
//!   ignored. The crate keeps both on the tokenizer object (setting them needs `&mut`, and a
//!   clone per setting costs ~25 ms: the Unigram trie and added-token automata are rebuilt), so
//!   each sequence is encoded bare and the crate's post-processing steps (truncate, add special
//!   tokens, pad) run here with the call's own settings, through the crate's public functions,
//!   in the crate's order. The tokenizer is immutable after loading: threads share it without a
//!   lock, and no call's settings can leak into another's.
//! - The pre-tokenizer is transformers 5's AlbertTokenizer one (whitespace split, then
//!   Metaspace), whatever the file says: transformers rebuilds the pipeline around the file's
//!   vocabulary, normalizer charsmap and added tokens, and offsets depend on it. `Compat` picks
//!   transformers 4's behaviour instead (the file's own bare Metaspace), which the pipelines use:
//!   see `Compat`.
//! - Offsets are in characters (Python `str` indices), not the crate's default bytes.
//! - `max_length` counts the special tokens the post-processor adds, as in transformers.

use std::path::Path;

use rayon::prelude::*;

use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::utils::padding::{pad_encodings, PaddingDirection, PaddingParams, PaddingStrategy};
use tokenizers::utils::truncation::{
    truncate_encodings, TruncationDirection, TruncationParams, TruncationStrategy,
};
use tokenizers::PostProcessor;

use crate::error::{Error, Result};
use crate::inputs::Inputs;

mod spans;
pub use spans::PairSpan;

/// transformers' default when tokenizer_config.json is absent or does not say.
const DEFAULT_MODEL_MAX_LENGTH: usize = 512;
const PAD_TOKEN: &str = "<pad>";
const MASK_TOKEN: &str = "[MASK]";

/// Which transformers release's AlbertTokenizerFast to reproduce. Both give the same ids for
/// ordinary text; they differ in pre-tokenization, which moves character offsets and word
/// boundaries, and in what a trailing space becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compat {
    /// transformers 5: whitespace split, then Metaspace. "▁create" in "Plants create" spans
    /// (7, 13), the word alone. What shared/albert-tokenizer/cases.json records.
    #[default]
    Transformers5,
    /// transformers 4.x: the tokenizer.json's own pre-tokenizer, a bare Metaspace that turns each
    /// space into the "▁" of the next word, so "▁create" spans (6, 13), space included, a word
    /// is "▁" + the text up to the next space, and a trailing space is a "▁" token. What the
    /// 4.57 pipelines saw (shared/models/*/pipelines.json: token-classification starts such as
    /// "▁cur" at 5, question-answering answers that begin with the space).
    Transformers4,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    #[default]
    None,
    /// Pad every encoding of a batch to the longest one.
    Longest,
    /// Pad to `EncodeOptions::max_length` (required).
    MaxLength,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Truncation {
    #[default]
    None,
    /// transformers' `truncation=True`.
    LongestFirst,
    OnlyFirst,
    OnlySecond,
}

#[derive(Clone, Debug, Default)]
pub struct EncodeOptions {
    pub padding: Padding,
    pub truncation: Truncation,
    /// Counts special tokens. With truncation on and `None`, the model_max_length.
    pub max_length: Option<usize>,
}

/// One encoded text (or pair), every field as long as `input_ids`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Encoding {
    pub input_ids: Vec<u32>,
    pub tokens: Vec<String>,
    pub token_type_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub special_tokens_mask: Vec<u32>,
    /// Character offsets into the original text (Python `str` indices); (0, 0) for special
    /// tokens and padding.
    pub offsets: Vec<(usize, usize)>,
}

/// One call's truncation and padding, defaults resolved and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    truncation: Truncation,
    truncation_length: usize, // 0 without truncation
    stride: usize,
    padding: Padding,
    padding_length: usize, // Padding::MaxLength only
    /// Keep the windows past max_length (`encode_pair_spans`); everything else drops them.
    keep_overflow: bool,
}

/// The crate asserts (a panic) that each truncated sequence keeps more tokens than `stride`:
/// refuse such a call instead. Windows overlap only for OnlyFirst/OnlySecond (`settings`).
fn check_stride(params: &TruncationParams, first: usize, second: usize) -> Result<()> {
    let total = first + second;
    if params.stride == 0 || total <= params.max_length || params.max_length == 0 {
        return Ok(());
    }
    let remove = total - params.max_length;
    let (len, which) = match params.strategy {
        TruncationStrategy::OnlySecond => (second, "second"),
        _ => (first, "first"),
    };
    let kept = len.saturating_sub(remove);
    if kept > 0 && kept <= params.stride {
        return Err(Error::Tokenizer(format!(
            "stride {} must be shorter than the {kept} tokens of the {which} text that fit in              max_length",
            params.stride
        )));
    }
    Ok(())
}

impl Settings {
    /// The crate's truncation parameters, `None` without truncation.
    fn truncation_params(&self) -> Option<TruncationParams> {
        let strategy = match self.truncation {
            Truncation::None => return None,
            Truncation::LongestFirst => TruncationStrategy::LongestFirst,
            Truncation::OnlyFirst => TruncationStrategy::OnlyFirst,
            Truncation::OnlySecond => TruncationStrategy::OnlySecond,
        };
        Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: self.truncation_length,
            strategy,
            stride: self.stride,
        })
    }
}

pub struct Tokenizer {
    /// With no truncation and no padding set: each call applies its own (`Settings`).
    base: tokenizers::Tokenizer,
    /// `base.get_vocab_size(true)`, which builds the whole vocabulary map on every call.
    vocab_size: usize,
    model_max_length: usize,
    pad_id: u32,
    compat: Compat,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("model_max_length", &self.model_max_length)
            .field("pad_id", &self.pad_id)
            .field("compat", &self.compat)
            .finish()
    }
}

/// Tokens are looked up by id, as transformers' `convert_ids_to_tokens` does: the crate's
/// own token strings are the matched text, so an lstrip token like "[MASK]" in "a [MASK]"
/// comes out as " [MASK]" (cases.json case 0 wants "[MASK]"; its offsets do include the space).
fn convert(tok: &tokenizers::Tokenizer, e: tokenizers::Encoding) -> Encoding {
    let tokens = e
        .get_ids()
        .iter()
        .zip(e.get_tokens())
        .map(|(&id, t)| tok.id_to_token(id).unwrap_or_else(|| t.clone()))
        .collect();
    Encoding {
        input_ids: e.get_ids().to_vec(),
        tokens,
        token_type_ids: e.get_type_ids().to_vec(),
        attention_mask: e.get_attention_mask().to_vec(),
        special_tokens_mask: e.get_special_tokens_mask().to_vec(),
        offsets: e.get_offsets().to_vec(),
    }
}

fn tok_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{what}: {e}"))
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`, and `model_max_length` from `dir/tokenizer_config.json` if
    /// that file exists.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_dir_compat(dir, Compat::Transformers5)
    }

    /// `from_dir`, tokenizing as the `compat` release of transformers does.
    pub fn from_dir_compat(dir: &Path, compat: Compat) -> Result<Self> {
        let mut tok = Self::from_file_compat(&dir.join("tokenizer.json"), compat)?;
        let config = dir.join("tokenizer_config.json");
        if config.exists() {
            let text = crate::limits::read_text(&config, crate::limits::MAX_CONFIG_BYTES)?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| tok_err(config.display(), e))?;
            // transformers writes int(1e30) ("no limit") for some models: saturate, don't fail.
            match json.get("model_max_length") {
                None | Some(serde_json::Value::Null) => {}
                Some(v) => match (v.as_u64(), v.as_f64()) {
                    (Some(n), _) => tok.model_max_length = usize::try_from(n).unwrap_or(usize::MAX),
                    (None, Some(f)) if f >= 1.0 => tok.model_max_length = f as usize, // saturates
                    _ => {
                        return Err(tok_err(
                            config.display(),
                            format!("model_max_length must be a positive integer, found {v}"),
                        ))
                    }
                },
            }
        }
        Ok(tok)
    }

    /// Loads a `tokenizer.json`; model_max_length is 512.
    pub fn from_file(tokenizer_json: &Path) -> Result<Self> {
        Self::from_file_compat(tokenizer_json, Compat::Transformers5)
    }

    /// `from_file`, tokenizing as the `compat` release of transformers does.
    pub fn from_file_compat(tokenizer_json: &Path, compat: Compat) -> Result<Self> {
        let text = crate::limits::read_text(tokenizer_json, crate::limits::MAX_TOKENIZER_BYTES)?;
        let mut inner: tokenizers::Tokenizer = text
            .parse()
            .map_err(|e| tok_err(tokenizer_json.display(), e))?;
        // transformers 5 splits on whitespace before the Metaspace; the file's bare Metaspace
        // (the converter's layout) instead turns each space into the "▁" of the next word, so
        // offsets would start one character early ((6, 13) for "▁create" in case 0, not (7, 13))
        // and a trailing space would become a "▁" token of its own. The file's normalizer ends
        // with a collapse of space runs that transformers 5 lacks; after the whitespace split it
        // changes neither tokens nor offsets, so it stays. transformers 4 ran the file as it is.
        if compat == Compat::Transformers5 {
            inner.with_pre_tokenizer(Some(Sequence::new(vec![
                WhitespaceSplit.into(),
                Metaspace::new('▁', PrependScheme::Always, true).into(),
            ])));
        }
        inner
            .with_truncation(None)
            .map_err(|e| tok_err(tokenizer_json.display(), e))?;
        inner.with_padding(None);
        // A tokenizer without "<pad>" still pads with id 0, ALBERT's pad id.
        let pad_id = inner.token_to_id(PAD_TOKEN).unwrap_or(0);
        Ok(Tokenizer {
            vocab_size: inner.get_vocab_size(true),
            base: inner,
            model_max_length: DEFAULT_MODEL_MAX_LENGTH,
            pad_id,
            compat,
        })
    }

    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }

    pub fn compat(&self) -> Compat {
        self.compat
    }

    /// `tok(text, text_pair, ...)` in transformers.
    pub fn encode(&self, text: &str, pair: Option<&str>, opts: &EncodeOptions) -> Result<Encoding> {
        // transformers' single-example path drops a falsy pair (`if text_pair`), so "" is no
        // pair: one [SEP] and all token types 0 (cases.json case "Is it raining?", "").
        let pair = pair.filter(|p| !p.is_empty());
        let settings = self.settings(opts, &[pair.is_some()], 0)?;
        let mut enc = [self.encode_raw(text, pair, &settings)?];
        // A single encode is padded alone, so Longest is a no-op here, as in transformers.
        self.pad(&mut enc, &settings)?;
        let [enc] = enc;
        Ok(convert(&self.base, enc))
    }

    /// `tok(texts, text_pairs, ...)` in transformers. Unlike `encode`, an empty pair stays a
    /// pair ([CLS] A [SEP] [SEP]): transformers' batch path passes pairs through as given.
    pub fn encode_batch(
        &self,
        inputs: &[(String, Option<String>)],
        opts: &EncodeOptions,
    ) -> Result<Vec<Encoding>> {
        let is_pair: Vec<bool> = inputs.iter().map(|(_, p)| p.is_some()).collect();
        let settings = self.settings(opts, &is_pair, 0)?;
        // In parallel, as the crate's encode_batch (results keep the input order).
        let mut encs = inputs
            .par_iter()
            .map(|(a, b)| self.encode_raw(a, b.as_deref(), &settings))
            .collect::<Result<Vec<_>>>()?;
        self.pad(&mut encs, &settings)?;
        Ok(encs.into_iter().map(|e| convert(&self.base, e)).collect())
    }

    /// One text (or pair) with special tokens and `settings`' truncation, unpadded: the crate's
    /// `encode_char_offsets(input, true)` with truncation set, step for step (each sequence
    /// encoded bare, truncated with room left for the special tokens, then post-processed).
    pub(crate) fn encode_raw(
        &self,
        text: &str,
        pair: Option<&str>,
        settings: &Settings,
    ) -> Result<tokenizers::Encoding> {
        // The crate's own encode of one sequence, before post-processing: no sequence ids (a
        // stale one would survive truncation into the overflowing windows), `type_id` on every
        // token.
        let bare = |t: &str, type_id: u32| {
            let e = self
                .base
                .encode_char_offsets(t, false)
                .map_err(|e| tok_err("encode", e))?;
            Ok::<_, Error>(tokenizers::Encoding::new(
                e.get_ids().to_vec(),
                vec![type_id; e.len()],
                e.get_tokens().to_vec(),
                e.get_word_ids().to_vec(),
                e.get_offsets().to_vec(),
                e.get_special_tokens_mask().to_vec(),
                e.get_attention_mask().to_vec(),
                Vec::new(),
                Default::default(),
            ))
        };
        let first = bare(text, 0)?;
        let second = pair.map(|p| bare(p, 1)).transpose()?;
        let processor = self.base.get_post_processor();
        let (first, second) = match settings.truncation_params() {
            None => (first, second),
            Some(mut params) => {
                let added = processor.map_or(0, |p| p.added_tokens(second.is_some()));
                params.max_length -= added; // checked >= added by `settings`
                check_stride(&params, first.len(), second.as_ref().map_or(0, |e| e.len()))?;
                let (mut first, mut second) = truncate_encodings(first, second, &params)
                    .map_err(|e| tok_err("truncate", e))?;
                if !settings.keep_overflow {
                    // The crate's post-processor merges every overflowing piece of the first
                    // text with every piece of the pair: quadratic (a 1,500-word pair cut to 16
                    // tokens took 1 s). Only pair windows (`encode_pair_spans`) use them.
                    first.take_overflowing();
                    if let Some(b) = second.as_mut() {
                        b.take_overflowing();
                    }
                }
                (first, second)
            }
        };
        match processor {
            Some(p) => p
                .process(first, second, true)
                .map_err(|e| tok_err("post-process", e)),
            None => {
                let merged = <dyn PostProcessor>::default_process(
                    std::iter::once(first).chain(second).collect(),
                    true,
                )
                .map_err(|e| tok_err("post-process", e))?;
                Ok(tokenizers::Encoding::merge(merged, false))
            }
        }
    }

    /// Pads `encs` as `settings` says (to the longest of them, or to a fixed length).
    fn pad(&self, encs: &mut [tokenizers::Encoding], settings: &Settings) -> Result<()> {
        let strategy = match settings.padding {
            Padding::None => return Ok(()),
            Padding::Longest => PaddingStrategy::BatchLongest,
            Padding::MaxLength => PaddingStrategy::Fixed(settings.padding_length),
        };
        let pad_token = self
            .base
            .id_to_token(self.pad_id)
            .unwrap_or_else(|| PAD_TOKEN.into());
        let params = PaddingParams {
            strategy,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: self.pad_id,
            pad_type_id: 0,
            pad_token,
        };
        pad_encodings(encs, &params).map_err(|e| tok_err("pad", e))
    }

    /// Checks `opts` against the inputs and resolves its defaults.
    pub(crate) fn settings(
        &self,
        opts: &EncodeOptions,
        is_pair: &[bool],
        stride: usize,
    ) -> Result<Settings> {
        let mut out = Settings {
            truncation: opts.truncation,
            padding: opts.padding,
            ..Settings::default()
        };
        if opts.truncation != Truncation::None {
            let max_length = opts.max_length.unwrap_or(self.model_max_length);
            // The crate subtracts the special tokens from max_length unchecked (a panic on
            // underflow), so refuse a max_length that cannot hold them.
            let added = |pair| {
                self.base
                    .get_post_processor()
                    .map_or(0, |p| p.added_tokens(pair))
            };
            let (needed, what) = match is_pair.contains(&true) {
                true => (added(true).max(added(false)), "a pair"),
                false => (added(false), "a single text"),
            };
            if max_length < needed {
                return Err(Error::Tokenizer(format!(
                    "max_length {max_length} is shorter than the {needed} special tokens of {what}"
                )));
            }
            if stride > 0 && opts.truncation == Truncation::LongestFirst {
                return Err(Error::Tokenizer(
                    "a stride needs truncation OnlyFirst or OnlySecond".into(),
                ));
            }
            out.truncation_length = max_length;
            out.stride = stride;
        }
        if opts.padding == Padding::MaxLength {
            out.padding_length = opts.max_length.ok_or_else(|| {
                Error::Tokenizer("padding to max_length needs EncodeOptions::max_length".into())
            })?;
        }
        Ok(out)
    }

    /// `tok.decode(ids, skip_special_tokens=...)` in transformers. No clean-up of spaces before
    /// punctuation: ALBERT's config leaves clean_up_tokenization_spaces off (cases.json).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.base
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_err("decode", e))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.base.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.base.id_to_token(id)
    }

    pub fn mask_token_id(&self) -> Result<u32> {
        self.token_to_id(MASK_TOKEN).ok_or_else(|| {
            Error::Tokenizer(format!("the vocabulary has no mask token `{MASK_TOKEN}`"))
        })
    }

    pub fn pad_token_id(&self) -> u32 {
        self.pad_id
    }

    /// Pieces plus added tokens: `len(tokenizer)` in transformers.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Stacks encodings of equal length into model inputs [B, S].
    pub fn to_inputs(encodings: &[Encoding]) -> Result<Inputs> {
        let Some(first) = encodings.first() else {
            return Err(Error::Input("no encodings to stack into inputs".into()));
        };
        let seq = first.input_ids.len();
        if let Some((i, e)) = encodings
            .iter()
            .enumerate()
            .find(|(_, e)| e.input_ids.len() != seq)
        {
            return Err(Error::Input(format!(
                "encoding 0 has {seq} tokens but encoding {i} has {}: pad the batch (Padding::Longest)",
                e.input_ids.len()
            )));
        }
        let flat = |f: fn(&Encoding) -> &Vec<u32>| -> Vec<i64> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().map(|&v| i64::from(v)))
                .collect()
        };
        Inputs::new(
            flat(|e| &e.input_ids),
            Some(flat(|e| &e.attention_mask)),
            Some(flat(|e| &e.token_type_ids)),
            &[encodings.len(), seq],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_tokenizer() -> Tokenizer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/albert-tokenizer");
        Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
    }

    /// Without `keep_overflow` the pieces past max_length are dropped before post-processing
    /// (the crate merges them pairwise, quadratic in the text's length); the kept encoding is
    /// the same.
    #[test]
    fn overflow_is_dropped_unless_asked_for() {
        let tok = shared_tokenizer();
        let long = "paris is the capital of france ".repeat(40);
        let opts = EncodeOptions {
            truncation: Truncation::LongestFirst,
            max_length: Some(16),
            ..Default::default()
        };
        let mut settings = tok.settings(&opts, &[true], 0).unwrap();
        let lean = tok.encode_raw(&long, Some(&long), &settings).unwrap();
        settings.keep_overflow = true;
        let full = tok.encode_raw(&long, Some(&long), &settings).unwrap();
        assert!(lean.get_overflowing().is_empty());
        assert!(
            full.get_overflowing().len() > 100,
            "{}",
            full.get_overflowing().len()
        );
        assert_eq!(lean.get_ids(), full.get_ids());
        assert_eq!(lean.get_offsets(), full.get_offsets());
        assert_eq!(lean.get_sequence_ids(), full.get_sequence_ids());
    }

    /// A stride the crate would assert on (a panic inside `Encoding::truncate`) is an error.
    #[test]
    fn stride_not_shorter_than_the_kept_tokens_is_an_error() {
        let tok = shared_tokenizer();
        let opts = EncodeOptions {
            truncation: Truncation::OnlySecond,
            max_length: Some(12),
            ..Default::default()
        };
        let settings = tok.settings(&opts, &[true], 4).unwrap();
        // "a b c" (3 tokens) + 3 special tokens leave 6 of the pair's tokens; stride 4 < 6 works.
        let long = "one two three four five six seven eight nine ten eleven twelve";
        assert!(tok.encode_raw("a b c", Some(long), &settings).is_ok());
        // A longer first text leaves 3 tokens of the pair, fewer than the stride: refused.
        let first = "a b c d e f";
        let err = tok.encode_raw(first, Some(long), &settings).unwrap_err();
        assert!(err.to_string().contains("stride 4"), "{err}");
    }

    /// Our truncate / post-process / pad steps give exactly what the crate gives with the same
    /// settings set on the tokenizer itself, overflowing windows included.
    #[test]
    fn post_processing_matches_the_crates_own() {
        let tok = shared_tokenizer();
        let words = [
            "Paris", "is", "the", "capital", "of", "France.", "naïve", "東京", "[MASK]",
        ];
        let mut r = crate::rng::Rng::new(11);
        let mut text = |n: u64| -> String {
            let n = 1 + r.below(n) as usize;
            (0..n)
                .map(|_| words[r.below(words.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let truncations = [
            Truncation::None,
            Truncation::LongestFirst,
            Truncation::OnlyFirst,
            Truncation::OnlySecond,
        ];
        for case in 0..120 {
            let (a, b) = (text(12), text(30));
            let pair = (case % 3 != 0).then_some(b.as_str());
            let truncation = truncations[case % 4];
            let stride = if truncation == Truncation::OnlySecond {
                case % 3
            } else {
                0
            };
            let opts = EncodeOptions {
                padding: [Padding::None, Padding::MaxLength][case % 2],
                truncation,
                max_length: Some(6 + case % 13),
            };
            let Ok(mut settings) = tok.settings(&opts, &[pair.is_some()], stride) else {
                continue;
            };
            settings.keep_overflow = true; // compared too

            let mut ours = [match tok.encode_raw(&a, pair, &settings) {
                Ok(e) => e,
                Err(_) => continue, // the crate would refuse or panic on the same stride
            }];
            tok.pad(&mut ours, &settings).unwrap();
            let mut theirs = tok.base.clone();
            theirs
                .with_truncation(settings.truncation_params())
                .unwrap();
            if settings.padding == Padding::MaxLength {
                theirs.with_padding(Some(PaddingParams {
                    strategy: PaddingStrategy::Fixed(settings.padding_length),
                    pad_id: tok.pad_id,
                    pad_token: PAD_TOKEN.into(),
                    ..Default::default()
                }));
            }
            let input: tokenizers::EncodeInput = match pair {
                Some(p) => (a.as_str(), p).into(),
                None => a.as_str().into(),
            };
            let theirs = theirs.encode_char_offsets(input, true).unwrap();
            let view = |e: &tokenizers::Encoding| {
                let all: Vec<&tokenizers::Encoding> =
                    std::iter::once(e).chain(e.get_overflowing()).collect();
                all.iter()
                    .map(|e| {
                        (
                            e.get_ids().to_vec(),
                            e.get_type_ids().to_vec(),
                            e.get_offsets().to_vec(),
                            e.get_word_ids().to_vec(),
                            e.get_sequence_ids(),
                            e.get_attention_mask().to_vec(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                view(&ours[0]),
                view(&theirs),
                "case {case}: {a:?} / {pair:?} {opts:?}"
            );
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let path = Path::new("/nonexistent/dir/tokenizer.json");
        let err = Tokenizer::from_file(path).expect_err("loading a missing file must fail");
        assert!(
            err.to_string().contains("/nonexistent/dir/tokenizer.json"),
            "{err}"
        );
        let err = Tokenizer::from_dir(Path::new("/nonexistent/dir")).expect_err("must fail");
        assert!(
            err.to_string().contains("/nonexistent/dir/tokenizer.json"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{\"version\": \"1.0\", \"model\": ").unwrap();
        let err = Tokenizer::from_file(&path).expect_err("a corrupt file must fail");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn max_length_padding_needs_max_length() {
        let tok = shared_tokenizer();
        let opts = EncodeOptions {
            padding: Padding::MaxLength,
            ..Default::default()
        };
        let err = tok
            .encode("hello", None, &opts)
            .expect_err("must fail without max_length");
        assert!(err.to_string().contains("max_length"), "{err}");
    }

    #[test]
    fn max_length_shorter_than_special_tokens_is_an_error() {
        let tok = shared_tokenizer();
        let opts = EncodeOptions {
            truncation: Truncation::LongestFirst,
            max_length: Some(2),
            ..Default::default()
        };
        // 2 fits [CLS] [SEP] of a single text, not the 3 special tokens of a pair.
        assert_eq!(
            tok.encode("hello world", None, &opts).unwrap().tokens,
            ["[CLS]", "[SEP]"]
        );
        let err = tok
            .encode("hello", Some("world"), &opts)
            .expect_err("must fail");
        assert!(err.to_string().contains("max_length 2"), "{err}");
    }

    #[test]
    fn truncation_defaults_to_model_max_length() {
        let tok = shared_tokenizer();
        let long = vec!["word"; 1000].join(" ");
        let opts = EncodeOptions {
            truncation: Truncation::LongestFirst,
            ..Default::default()
        };
        assert_eq!(tok.encode(&long, None, &opts).unwrap().input_ids.len(), 512);
        let none = tok.encode(&long, None, &EncodeOptions::default()).unwrap();
        assert_eq!(none.input_ids.len(), 1002);
    }

    #[test]
    fn to_inputs_rejects_ragged_and_empty() {
        let tok = shared_tokenizer();
        let a = tok
            .encode("a b c", None, &EncodeOptions::default())
            .unwrap();
        let b = tok.encode("a", None, &EncodeOptions::default()).unwrap();
        let err = Tokenizer::to_inputs(&[a.clone(), b]).unwrap_err();
        assert!(err.to_string().contains("encoding 1"), "{err}");
        assert!(Tokenizer::to_inputs(&[]).is_err());
        let inputs = Tokenizer::to_inputs(&[a]).unwrap();
        assert_eq!((inputs.batch, inputs.seq), (1, 5));
    }
}
