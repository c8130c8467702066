//! Sizes the engine refuses before allocating, so that a hostile file or request cannot make it
//! allocate gigabytes: the tokens of one forward pass (configurable, `Limits`), the bytes of a
//! JSON file read whole, and every dimension of a config.json.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Runtime limits of a loaded model, checked before any activation is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most token positions in one forward pass: B x S (B x C x S for multiple choice),
    /// padding included. Activations grow linearly with it (albert-base: ~20 KiB per token on
    /// the CPU in f32), so the default, 128 sequences of 512 tokens, bounds them to ~1.3 GiB.
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

pub const DEFAULT_MAX_TOKENS: usize = 128 * 512;

impl Limits {
    /// Refuses a pass of `rows` x `seq` token positions above `max_tokens`.
    pub fn check_tokens(&self, rows: usize, seq: usize) -> Result<()> {
        let tokens = rows.saturating_mul(seq);
        if tokens > self.max_tokens {
            return Err(Error::Input(format!(
                "{rows} sequences x {seq} positions = {tokens} tokens is more than this engine's \
                 limit of {} per forward pass (Limits::max_tokens, --max-tokens): split the batch",
                self.max_tokens
            )));
        }
        Ok(())
    }
}

/// The largest config.json, tokenizer_config.json or safetensors index read (real ones are a
/// few KiB; a weight_map of 10,000 tensors is under 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The largest tokenizer.json read (albert's is 2.2 MiB; 250k-piece vocabularies ~20 MiB).
pub const MAX_TOKENIZER_BYTES: u64 = 512 << 20;

/// The largest value of any size field of config.json (vocab_size, hidden_size, ...): 2^24,
/// far above every released model (xxlarge: hidden 4096, intermediate 16384), and small enough
/// that products of two sizes cannot overflow.
pub const MAX_CONFIG_DIM: usize = 1 << 24;

/// The largest layer count (num_hidden_layers, num_hidden_groups, inner_group_num).
pub const MAX_CONFIG_LAYERS: usize = 1 << 12;

/// The largest safetensors file of model inputs `albert forward` reads (65,536 tokens of int64
/// ids, mask and types are 1.5 MiB).
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Reads a file of at most `max` bytes; a larger one is an error naming the file.
pub fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    // take(max + 1): a file that grows while being read is still caught.
    let read = file
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if read as u64 > max {
        return Err(too_large(path, max));
    }
    Ok(bytes)
}

fn too_large(path: &Path, max: u64) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        err: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than the {} MiB this engine reads", max >> 20),
        ),
    }
}

/// Reads a UTF-8 text file of at most `max` bytes; a larger one is an error naming the file,
/// and it is never read into memory whole.
pub fn read_text(path: &Path, max: u64) -> Result<String> {
    String::from_utf8(read_bytes(path, max)?).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_limit_counts_rows_times_positions() {
        let l = Limits { max_tokens: 1024 };
        assert!(l.check_tokens(2, 512).is_ok());
        let msg = l.check_tokens(3, 512).unwrap_err().to_string();
        assert!(msg.contains("1536 tokens") && msg.contains("1024"), "{msg}");
        assert!(l.check_tokens(usize::MAX, 2).is_err()); // overflow is over the limit
    }

    #[test]
    fn oversized_text_file_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("albert-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.json");
        std::fs::write(&path, vec![b' '; 2048]).unwrap();
        assert_eq!(read_text(&path, 2048).unwrap().len(), 2048);
        let msg = read_text(&path, 2047).unwrap_err().to_string();
        assert!(
            msg.contains("big.json") && msg.contains("larger than"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
