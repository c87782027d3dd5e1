//! Model parameters held in Rust: an ordered map from canonical Hugging Face tensor names to
//! `f32` arrays, loaded from and saved to safetensors.
//!
//! Canonical names drop a leading `bert.` (checkpoints saved from `BertForX` carry it, plain
//! `BertModel` checkpoints do not), so `embeddings.word_embeddings.weight` names the same
//! tensor in both.
use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result};

/// Strips the `bert.` prefix some checkpoints carry.
pub fn canonical_name(name: &str) -> &str {
    name.strip_prefix("bert.").unwrap_or(name)
}

/// Ordered named parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamStore {
    tensors: BTreeMap<String, ArrayD<f32>>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every floating-point tensor of a safetensors file (f32, f16 and bf16 are widened to
    /// f32; integer tensors such as `position_ids` are skipped).
    pub fn load(path: &Path) -> Result<ParamStore> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is opened read-only and not modified by us while mapped.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| Error::Checkpoint {
            path: path.into(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        let mut store = ParamStore::new();
        for (name, view) in st.tensors() {
            let shape: Vec<usize> = view.shape().to_vec();
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                _ => continue,
            };
            let arr =
                ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| Error::Checkpoint {
                    path: path.into(),
                    message: format!("tensor `{name}`: {e}"),
                })?;
            store.insert(canonical_name(&name), arr);
        }
        Ok(store)
    }

    /// Saves all tensors as f32 safetensors under their canonical names. Written to a temporary
    /// file and renamed, so an interrupted save never leaves a truncated file behind.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, a)| {
                let data: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
                (n.clone(), a.shape().to_vec(), data)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, d)| {
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), d)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::Invalid(format!("tensor `{n}`: {e}")))
            })
            .collect::<Result<_>>()?;
        let out = safetensors::serialize(views, None).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(path, &out)
    }

    /// Inserts (or replaces) a tensor under its canonical name.
    pub fn insert(&mut self, name: &str, value: ArrayD<f32>) {
        self.tensors.insert(canonical_name(name).to_string(), value);
    }

    /// The tensor with this (canonical or `bert.`-prefixed) name.
    pub fn get(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.tensors.get(canonical_name(name))
    }

    /// Mutable access to a tensor.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ArrayD<f32>> {
        self.tensors.get_mut(canonical_name(name))
    }

    /// The tensor, or a checkpoint error naming it.
    pub fn require(&self, name: &str, source: &Path) -> Result<&ArrayD<f32>> {
        self.get(name).ok_or_else(|| Error::Checkpoint {
            path: source.into(),
            message: format!("missing tensor `{name}` (also looked for `bert.{name}`)"),
        })
    }

    /// Names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Iterates over `(name, tensor)` in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ArrayD<f32>)> {
        self.tensors.iter().map(|(n, a)| (n.as_str(), a))
    }
}

pub use crate::fsutil::write_atomic;
