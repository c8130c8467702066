//! AlbertConfig: every field of transformers' configuration_albert.py with its defaults, parsed
//! from config.json field by field so that an error names the field and the value it found.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::activation::Activation;
use super::head::Head;
use crate::error::{Error, Result};
use crate::limits::{MAX_CONFIG_DIM, MAX_CONFIG_LAYERS};

#[derive(Clone, Debug, PartialEq)]
pub struct AlbertConfig {
    pub vocab_size: usize,          // V
    pub embedding_size: usize,      // E
    pub hidden_size: usize,         // H
    pub num_hidden_layers: usize,   // L, layer applications
    pub num_hidden_groups: usize,   // G, distinct weight groups
    pub num_attention_heads: usize, // A
    pub intermediate_size: usize,   // I
    pub inner_group_num: usize,     // layers inside each group
    pub hidden_act: Activation,
    pub hidden_act_name: String,
    pub max_position_embeddings: usize, // P
    pub type_vocab_size: usize,         // T
    pub layer_norm_eps: f32,
    pub pad_token_id: usize,
    pub tie_word_embeddings: bool,
    /// id -> label, dense from 0 to num_labels - 1.
    pub id2label: Vec<String>,
    pub label2id: BTreeMap<String, usize>,
    /// `regression`, `single_label_classification`, `multi_label_classification` or None.
    pub problem_type: Option<String>,
    pub architectures: Vec<String>,
}

impl Default for AlbertConfig {
    /// transformers' AlbertConfig() defaults (albert-xxlarge sizes).
    fn default() -> Self {
        AlbertConfig {
            vocab_size: 30000,
            embedding_size: 128,
            hidden_size: 4096,
            num_hidden_layers: 12,
            num_hidden_groups: 1,
            num_attention_heads: 64,
            intermediate_size: 16384,
            inner_group_num: 1,
            hidden_act: Activation::GeluTanh,
            hidden_act_name: "gelu_new".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            tie_word_embeddings: true,
            id2label: vec!["LABEL_0".into(), "LABEL_1".into()],
            label2id: [("LABEL_0".into(), 0), ("LABEL_1".into(), 1)].into(),
            problem_type: None,
            architectures: vec![],
        }
    }
}

impl AlbertConfig {
    /// The albert-base-v2 shape, used by `albert bench` without files.
    pub fn base_v2() -> Self {
        AlbertConfig {
            hidden_size: 768,
            num_attention_heads: 12,
            intermediate_size: 3072,
            architectures: vec!["AlbertForMaskedLM".into()],
            ..AlbertConfig::default()
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::limits::read_text(path, crate::limits::MAX_CONFIG_BYTES)?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parses config.json text; `origin` names the file in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::config(origin, format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::config(origin, "top level is not a JSON object"))?;
        let f = Fields { obj, origin };
        let d = AlbertConfig::default();

        if let Some(t) = f.string("model_type")? {
            if t != "albert" {
                return Err(Error::config(
                    origin,
                    format!("model_type is `{t}`, expected `albert`"),
                ));
            }
        }
        if let Some(p) = f.string("position_embedding_type")? {
            if p != "absolute" {
                return Err(Error::config(
                    origin,
                    format!("position_embedding_type `{p}` is not supported (only `absolute`)"),
                ));
            }
        }
        let hidden_act_name = f.string("hidden_act")?.unwrap_or(d.hidden_act_name);
        let hidden_act = Activation::from_name(&hidden_act_name).ok_or_else(|| {
            Error::config(
                origin,
                format!(
                    "hidden_act `{hidden_act_name}` is not supported (supported: {})",
                    Activation::SUPPORTED
                ),
            )
        })?;
        let (id2label, label2id) = f.labels()?;

        let cfg = AlbertConfig {
            vocab_size: f.usize("vocab_size")?.unwrap_or(d.vocab_size),
            embedding_size: f.usize("embedding_size")?.unwrap_or(d.embedding_size),
            hidden_size: f.usize("hidden_size")?.unwrap_or(d.hidden_size),
            num_hidden_layers: f.usize("num_hidden_layers")?.unwrap_or(d.num_hidden_layers),
            num_hidden_groups: f.usize("num_hidden_groups")?.unwrap_or(d.num_hidden_groups),
            num_attention_heads: f
                .usize("num_attention_heads")?
                .unwrap_or(d.num_attention_heads),
            intermediate_size: f.usize("intermediate_size")?.unwrap_or(d.intermediate_size),
            inner_group_num: f.usize("inner_group_num")?.unwrap_or(d.inner_group_num),
            hidden_act,
            hidden_act_name,
            max_position_embeddings: f
                .usize("max_position_embeddings")?
                .unwrap_or(d.max_position_embeddings),
            type_vocab_size: f.usize("type_vocab_size")?.unwrap_or(d.type_vocab_size),
            layer_norm_eps: f
                .f64("layer_norm_eps")?
                .map(|v| v as f32)
                .unwrap_or(d.layer_norm_eps),
            pad_token_id: f.usize("pad_token_id")?.unwrap_or(d.pad_token_id),
            tie_word_embeddings: f
                .bool("tie_word_embeddings")?
                .unwrap_or(d.tie_word_embeddings),
            id2label,
            label2id,
            problem_type: f.string("problem_type")?,
            architectures: f.strings("architectures")?.unwrap_or_default(),
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Checks the sizes the forward pass relies on; the message names the field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_hidden_groups", self.num_hidden_groups),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("inner_group_num", self.inner_group_num),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (name, v) in nonzero {
            let max = match name {
                "num_hidden_layers" | "num_hidden_groups" | "inner_group_num" => MAX_CONFIG_LAYERS,
                _ => MAX_CONFIG_DIM,
            };
            if v == 0 || v > max {
                return Err(Error::config(
                    origin,
                    format!("{name} must be between 1 and {max}, found {v}"),
                ));
            }
        }
        if self.num_labels() > MAX_CONFIG_DIM {
            return Err(Error::config(
                origin,
                format!(
                    "num_labels must be at most {MAX_CONFIG_DIM}, found {}",
                    self.num_labels()
                ),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                origin,
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if self.num_hidden_groups > self.num_hidden_layers {
            return Err(Error::config(
                origin,
                format!(
                    "num_hidden_groups {} must be between 1 and num_hidden_layers {}",
                    self.num_hidden_groups, self.num_hidden_layers
                ),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return Err(Error::config(
                origin,
                format!(
                    "layer_norm_eps {} must be a finite number >= 0",
                    self.layer_norm_eps
                ),
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(Error::config(
                origin,
                format!(
                    "pad_token_id {} must be < vocab_size {}",
                    self.pad_token_id, self.vocab_size
                ),
            ));
        }
        Ok(())
    }

    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// The weight group that layer application `i` uses. transformers computes
    /// `int(i / (num_hidden_layers / num_hidden_groups))` in Python floats; so do we, so that
    /// layer counts that do not divide evenly map exactly as they do there.
    pub fn group_of_application(&self, i: usize) -> usize {
        let per_group = self.num_hidden_layers as f64 / self.num_hidden_groups as f64;
        ((i as f64 / per_group) as usize).min(self.num_hidden_groups - 1)
    }

    /// The head config.json names in `architectures`, AlbertModel when it names none.
    pub fn default_head(&self) -> Result<Head> {
        match self.architectures.first() {
            Some(name) => Head::from_name(name),
            None => Ok(Head::Model),
        }
    }
}

/// Typed access to config.json fields; absent or null fields are `None`, wrong types are errors.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    origin: &'a str,
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn bad(&self, name: &str, expected: &str, found: &Value) -> Error {
        Error::config(
            self.origin,
            format!("field `{name}` must be {expected}, found {found}"),
        )
    }

    fn usize(&self, name: &str) -> Result<Option<usize>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= u32::MAX as usize)
                .map(Some)
                .ok_or_else(|| self.bad(name, "a non-negative integer", v)),
        }
    }

    fn f64(&self, name: &str) -> Result<Option<f64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(name, "a number", v)),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(name, "true or false", v)),
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.bad(name, "a string", v)),
        }
    }

    fn strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
                .map(Some)
                .ok_or_else(|| self.bad(name, "a list of strings", v)),
        }
    }

    /// id2label / label2id / num_labels as transformers' PretrainedConfig resolves them:
    /// id2label wins when present; otherwise LABEL_0 .. LABEL_{num_labels-1} (default 2).
    fn labels(&self) -> Result<(Vec<String>, BTreeMap<String, usize>)> {
        let id2label = match self.get("id2label") {
            Some(v) => {
                let map = v
                    .as_object()
                    .ok_or_else(|| self.bad("id2label", "an object", v))?;
                let mut pairs = Vec::with_capacity(map.len());
                for (k, label) in map {
                    let id: usize = k.parse().map_err(|_| {
                        Error::config(self.origin, format!("id2label key `{k}` is not an integer"))
                    })?;
                    let label = label
                        .as_str()
                        .ok_or_else(|| self.bad(&format!("id2label.{k}"), "a string", label))?;
                    pairs.push((id, label.to_string()));
                }
                pairs.sort();
                for (expected, (id, _)) in pairs.iter().enumerate() {
                    if *id != expected {
                        return Err(Error::config(
                            self.origin,
                            format!("id2label ids must be 0..{}, found id {id}", pairs.len()),
                        ));
                    }
                }
                pairs.into_iter().map(|(_, l)| l).collect()
            }
            None => {
                let n = self.usize("num_labels")?.unwrap_or(2);
                (0..n).map(|i| format!("LABEL_{i}")).collect::<Vec<_>>()
            }
        };
        let label2id = match self.get("label2id") {
            Some(v) => {
                let map = v
                    .as_object()
                    .ok_or_else(|| self.bad("label2id", "an object", v))?;
                let mut out = BTreeMap::new();
                for (label, id) in map {
                    let id = id
                        .as_u64()
                        .ok_or_else(|| self.bad(&format!("label2id.{label}"), "an integer", id))?;
                    out.insert(label.clone(), id as usize);
                }
                out
            }
            None => id2label
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i))
                .collect(),
        };
        Ok((id2label, label2id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_transformers() {
        let c = AlbertConfig::from_json_str("{}", "t").unwrap();
        assert_eq!(c, AlbertConfig::default());
        assert_eq!(c.num_labels(), 2);
    }

    #[test]
    fn group_mapping_follows_python_float_division() {
        let c = AlbertConfig {
            num_hidden_layers: 6,
            num_hidden_groups: 3,
            ..Default::default()
        };
        let g: Vec<_> = (0..6).map(|i| c.group_of_application(i)).collect();
        assert_eq!(g, [0, 0, 1, 1, 2, 2]);
        let c = AlbertConfig {
            num_hidden_layers: 5,
            num_hidden_groups: 2,
            ..Default::default()
        };
        let g: Vec<_> = (0..5).map(|i| c.group_of_application(i)).collect();
        assert_eq!(g, [0, 0, 0, 1, 1]); // int(i / 2.5)
    }

    #[test]
    fn bad_fields_are_named() {
        let e = AlbertConfig::from_json_str(r#"{"hidden_size": "big"}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("hidden_size"), "{e}");
        let e =
            AlbertConfig::from_json_str(r#"{"hidden_size": 100, "num_attention_heads": 3}"#, "c")
                .unwrap_err();
        assert!(e.to_string().contains("not divisible"), "{e}");
        let e = AlbertConfig::from_json_str(r#"{"num_hidden_groups": 13}"#, "c").unwrap_err();
        assert!(e.to_string().contains("num_hidden_groups"), "{e}");
        let e = AlbertConfig::from_json_str(r#"{"intermediate_size": 0}"#, "c").unwrap_err();
        assert!(e.to_string().contains("intermediate_size"), "{e}");
        let e = AlbertConfig::from_json_str(r#"{"hidden_act": "nope"}"#, "c").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn id2label_wins_over_num_labels() {
        let c = AlbertConfig::from_json_str(
            r#"{"num_labels": 7, "id2label": {"1": "b", "0": "a", "2": "c"}}"#,
            "c",
        )
        .unwrap();
        assert_eq!(c.id2label, ["a", "b", "c"]);
        assert_eq!(c.label2id["c"], 2);
    }
}
