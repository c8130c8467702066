//! What the pipelines need from the tokenizer beyond `encode`: a long pair cut into overlapping
//! windows (question answering's `doc_stride`), words and sequences per token, and tokens turned
//! back into text as transformers' `convert_tokens_to_string` does.

use super::{convert, tok_err, EncodeOptions, Encoding, Tokenizer, Truncation};
use crate::error::{Error, Result};

/// One window of a (text, pair) encoding: `tok(text, pair, truncation="only_second",
/// stride=..., return_overflowing_tokens=True)[i]` in transformers.
#[derive(Clone, Debug)]
pub struct PairSpan {
    pub encoding: Encoding,
    /// The crate's encoding, kept for its word and sequence bookkeeping (no overflow).
    raw: tokenizers::Encoding,
}

impl PairSpan {
    /// 0 for tokens of the first text, 1 for the pair, None for special tokens.
    pub fn sequence_ids(&self) -> Vec<Option<usize>> {
        self.raw.get_sequence_ids()
    }

    /// The word (pre-token, numbered within its sequence) that token `token` belongs to.
    pub fn token_to_word(&self, token: usize) -> Option<u32> {
        self.raw.token_to_word(token).map(|(_, word)| word)
    }

    /// Character span (start, end) of word `word` of sequence `sequence`, over the tokens of this
    /// window: `Encoding.word_to_chars` of the tokenizers library.
    pub fn word_to_chars(&self, word: u32, sequence: usize) -> Option<(usize, usize)> {
        self.raw.word_to_chars(word, sequence)
    }
}

impl Tokenizer {
    /// Encodes (text, pair) with at most `max_length` tokens per window: the pair is cut into
    /// windows that overlap by `stride` tokens, each with the whole first text. Windows are in
    /// order; a pair that fits gives one. No padding. Errors (instead of the tokenizers crate's
    /// panic) when the first text leaves no room for the pair, or `stride` is not shorter than
    /// the room left.
    pub fn encode_pair_spans(
        &self,
        text: &str,
        pair: &str,
        max_length: usize,
        stride: usize,
    ) -> Result<Vec<PairSpan>> {
        // The untruncated encoding's lengths decide whether the window can hold anything.
        let full = self
            .base
            .encode_char_offsets((text, pair), true)
            .map_err(|e| tok_err("encode", e))?;
        if full.len() > max_length {
            let seq = full.get_sequence_ids();
            let first = seq.iter().filter(|s| **s == Some(0)).count();
            let second = seq.iter().filter(|s| **s == Some(1)).count();
            let specials = full.len() - first - second;
            // How many tokens of the pair fit a window next to the first text.
            let room = max_length.saturating_sub(first + specials);
            if room == 0 {
                return Err(Error::Tokenizer(format!(
                    "the first text has {first} tokens: with the special tokens that leaves no \
                     room for the second in a window of {max_length} tokens"
                )));
            }
            if stride >= room {
                return Err(Error::Tokenizer(format!(
                    "stride {stride} must be shorter than the {room} tokens of the second text \
                     that fit a window of {max_length} tokens next to the {first} of the first"
                )));
            }
        }
        let opts = EncodeOptions {
            truncation: Truncation::OnlySecond,
            max_length: Some(max_length),
            ..Default::default()
        };
        let mut settings = self.settings(&opts, &[true], stride)?;
        settings.keep_overflow = true;
        let mut enc = self.encode_raw(text, Some(pair), &settings)?;
        let overflowing = enc.take_overflowing();
        Ok(std::iter::once(enc)
            .chain(overflowing)
            .map(|raw| PairSpan {
                encoding: convert(&self.base, raw.clone()),
                raw,
            })
            .collect())
    }

    /// transformers' `convert_tokens_to_string`: the tokenizer.json's decoder run on the tokens
    /// ("▁paris", "▁in" -> "paris in"; the leading "▁" of the first token is dropped).
    pub fn convert_tokens_to_string(&self, tokens: &[String]) -> Result<String> {
        match self.base.get_decoder() {
            Some(d) => tokenizers::Decoder::decode(d, tokens.to_vec())
                .map_err(|e| tok_err("decode tokens", e)),
            None => Ok(tokens.join(" ")),
        }
    }

    /// The id of `<unk>`, if the vocabulary has one.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.token_to_id("<unk>")
    }
}
