//! Embedding gather + LayerNorm. The three rows are summed in f64 and normalised with f64
//! statistics, as in the reference; the tables are f32, or bf16 when the model runs in bf16
//! (what the bf16 emulation of the reference rounds them to). The E -> H projection that follows
//! is a `linear_forward`.

use rayon::prelude::*;

use super::gemm::pack::{bf16_bits, bf16_to_f32};
use crate::backend::cpu::reference::layernorm_row;
use crate::dtype::DType;

/// An embedding table [rows, E], stored f32 or bf16.
#[derive(Clone)]
pub enum Table {
    F32(Vec<f32>),
    BF16(Vec<u16>),
}

impl Table {
    pub fn new(values: Vec<f32>, dtype: DType) -> Self {
        match dtype {
            DType::BF16 => Table::BF16(values.iter().map(|&v| bf16_bits(v) as u16).collect()),
            _ => Table::F32(values),
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Table::F32(v) => v.len() * 4,
            Table::BF16(v) => v.len() * 2,
        }
    }

    /// Adds row `r` (width `e`) to `acc` in f64.
    #[inline]
    fn add_row(&self, acc: &mut [f64], r: usize, e: usize) {
        match self {
            Table::F32(t) => {
                for (a, v) in acc.iter_mut().zip(&t[r * e..(r + 1) * e]) {
                    *a += *v as f64;
                }
            }
            Table::BF16(t) => {
                for (a, v) in acc.iter_mut().zip(&t[r * e..(r + 1) * e]) {
                    *a += bf16_to_f32(*v) as f64;
                }
            }
        }
    }

    /// The whole table as f32 (for packing it as the tied MLM decoder).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Table::F32(t) => t.clone(),
            Table::BF16(t) => t.iter().map(|&v| bf16_to_f32(v)).collect(),
        }
    }
}

/// Longest embedding row the stack buffer takes; wider ones use the heap.
const STACK_E: usize = 1024;

/// out[B*S, E] = LayerNorm(word[ids] + token_type[types] + position[s]) over E.
/// Ids are already validated against the tables.
#[allow(clippy::too_many_arguments)]
pub fn embeddings_forward(
    out: &mut [f32],        // [B*S, E]
    input_ids: &[u32],      // [B*S]
    token_type_ids: &[u32], // [B*S]
    word: &Table,           // [V, E]
    position: &Table,       // [P, E]
    token_type: &Table,     // [T, E]
    ln_weight: &[f32],      // [E]
    ln_bias: &[f32],        // [E]
    s: usize,
    e: usize,
    eps: f32,
) {
    out.par_chunks_mut(e).enumerate().for_each(|(row, o)| {
        let mut stack = [0f64; STACK_E];
        let mut heap = Vec::new();
        let acc: &mut [f64] = if e <= STACK_E {
            &mut stack[..e]
        } else {
            heap.resize(e, 0.0);
            &mut heap
        };
        word.add_row(acc, input_ids[row] as usize, e);
        token_type.add_row(acc, token_type_ids[row] as usize, e);
        position.add_row(acc, row % s, e);
        // E is small (128): the reference's f64 row LayerNorm costs nothing here.
        layernorm_row(o, acc, ln_weight, ln_bias, eps);
    });
}
