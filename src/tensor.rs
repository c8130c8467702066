//! A named, shaped f32 host tensor: what the engine returns, and what `albert forward` writes.

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?}"
        );
        Tensor { shape, data }
    }
}

/// Outputs of a forward pass, in the order transformers returns them, under its names
/// (`last_hidden_state`, `pooler_output`, `logits`, `hidden_states.0` ...).
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    pub tensors: Vec<(String, Tensor)>,
}

impl Outputs {
    pub fn push(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.push((name.into(), tensor));
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }
}
