//! The BERT encoder written once over the [graph builder](crate::graph), one struct per
//! checkpoint module in the style of candle's `bert.rs`.
//!
//! Parameters enter the graph through a [`ParamSource`]: as initializers holding the
//! checkpoint's values (the inference graph, `model.onnx`) or as graph inputs named by their
//! Hugging Face names (the training graphs). The forward code is the same for both, so the
//! training graph computes exactly what the inference graph does.
//!
//! The module structs are also the one list of checkpoint tensors: each `load` names its
//! tensors and their shapes under its prefix, and [`BertModel::tensors`] reads the composed
//! list back (what [`BertConfig::expected_tensors`] checks checkpoints against).
//!
//! ```
//! use ltre_core::bert::{build_encoder, EncoderSpec, ParamSource};
//! use ltre_core::manifest::Pooling;
//! # let config: ltre_core::checkpoint::BertConfig = serde_json::from_str(r#"{"model_type":"bert",
//! #   "vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
//! #   "intermediate_size":16,"max_position_embeddings":16}"#).unwrap();
//! let spec = EncoderSpec { pooling: Pooling::Mean, normalize: true };
//! let built = build_encoder(&config, &ParamSource::Inputs, spec).unwrap();
//! assert_eq!(built.parameters.len(), config.expected_tensors().unwrap().len());
//! ```
use crate::checkpoint::BertConfig;
use crate::graph::{DType, Dim, Graph, Tensor, TensorData, Value};
use crate::manifest::{io_names, Pooling};
use crate::params::ParamStore;
use crate::{Error, Result};

/// Added to attention scores of padding keys; large enough that `exp` underflows to zero,
/// small enough that a fully padded row stays finite.
const MASK_NEGATIVE: f32 = -1.0e9;

/// How parameters enter the graph.
#[derive(Debug, Clone, Copy)]
pub enum ParamSource<'a> {
    /// As initializers with these values (inference).
    Initializers(&'a ParamStore),
    /// As f32 graph inputs named by their canonical Hugging Face names (training).
    Inputs,
}

/// A view of the parameters under a module prefix, like candle's `VarBuilder`.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    source: ParamSource<'a>,
    prefix: String,
}

impl<'a> Params<'a> {
    /// The root view.
    pub fn new(source: ParamSource<'a>) -> Params<'a> {
        Params {
            source,
            prefix: String::new(),
        }
    }

    /// The view under `prefix.name`.
    pub fn pp(&self, name: &str) -> Params<'a> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Params {
            source: self.source,
            prefix,
        }
    }

    /// Adds the parameter `prefix.name` of the given shape to the graph.
    pub fn get(&self, g: &mut Graph, name: &str, shape: &[usize]) -> Result<Value> {
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        match self.source {
            ParamSource::Inputs => g.input(
                &full,
                DType::F32,
                shape.iter().map(|&d| Dim::Fixed(d)).collect(),
            ),
            ParamSource::Initializers(store) => {
                let t = store.get(&full).ok_or_else(|| {
                    Error::Invalid(format!("parameter store has no tensor `{full}`"))
                })?;
                if t.shape() != shape {
                    return Err(Error::Invalid(format!(
                        "tensor `{full}` has shape {:?}, expected {shape:?}",
                        t.shape()
                    )));
                }
                let data = t.iter().copied().collect();
                g.initializer(
                    &full,
                    Tensor {
                        dims: shape.to_vec(),
                        data: TensorData::F32(data),
                    },
                )
            }
        }
    }
}

/// `y = x W^T + b` with Hugging Face's `[out, in]` weight layout.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Value,
    bias: Value,
}

impl Linear {
    /// Loads `weight` `[out, in]` and `bias` `[out]`.
    pub fn load(g: &mut Graph, p: &Params, in_dim: usize, out_dim: usize) -> Result<Linear> {
        Ok(Linear {
            weight: p.get(g, "weight", &[out_dim, in_dim])?,
            bias: p.get(g, "bias", &[out_dim])?,
        })
    }

    /// Applies the layer to the last axis of `x`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let wt = g.transpose(self.weight, &[1, 0])?;
        let y = g.matmul(x, wt)?;
        g.add(y, self.bias)
    }
}

/// LayerNorm over the last axis (the native opset-17 `LayerNormalization`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Value,
    bias: Value,
    eps: f32,
}

impl LayerNorm {
    /// Loads `weight` and `bias` `[dim]`.
    pub fn load(g: &mut Graph, p: &Params, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: p.get(g, "weight", &[dim])?,
            bias: p.get(g, "bias", &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises `x`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        g.layer_norm(x, self.weight, self.bias, self.eps)
    }
}

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    word_embeddings: Value,
    position_embeddings: Value,
    token_type_embeddings: Value,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    /// Loads the `embeddings.*` tensors.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertEmbeddings> {
        let h = c.hidden_size;
        Ok(BertEmbeddings {
            word_embeddings: p
                .pp("word_embeddings")
                .get(g, "weight", &[c.vocab_size, h])?,
            position_embeddings: p.pp("position_embeddings").get(
                g,
                "weight",
                &[c.max_position_embeddings, h],
            )?,
            token_type_embeddings: p.pp("token_type_embeddings").get(
                g,
                "weight",
                &[c.type_vocab_size, h],
            )?,
            layer_norm: LayerNorm::load(g, &p.pp("LayerNorm"), h, c.layer_norm_eps)?,
        })
    }

    /// Returns the embeddings `[batch, seq, hidden]` and the gathered word-embedding rows (the
    /// value whose gradient is the sparse word-embedding gradient).
    pub fn forward(
        &self,
        g: &mut Graph,
        input_ids: Value,
        token_type_ids: Value,
    ) -> Result<(Value, Value)> {
        let words = g.gather(self.word_embeddings, input_ids, 0)?;
        // Position ids are 0..seq, so the rows are a prefix of the table.
        let seq = g.shape_of(input_ids, Some(1), Some(2))?;
        let positions = g.slice(self.position_embeddings, &[0], seq, &[0])?;
        let types = g.gather(self.token_type_embeddings, token_type_ids, 0)?;
        let x = g.add(words, types)?;
        let x = g.add(x, positions)?;
        Ok((self.layer_norm.forward(g, x)?, words))
    }
}

/// Multi-head scaled dot-product self-attention.
#[derive(Debug, Clone)]
pub struct BertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl BertSelfAttention {
    /// Loads `query`, `key` and `value`.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertSelfAttention> {
        let h = c.hidden_size;
        Ok(BertSelfAttention {
            query: Linear::load(g, &p.pp("query"), h, h)?,
            key: Linear::load(g, &p.pp("key"), h, h)?,
            value: Linear::load(g, &p.pp("value"), h, h)?,
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
        })
    }

    /// `x` `[batch, seq, hidden]`, `mask_bias` `[batch, 1, 1, seq]` (0 or a large negative).
    pub fn forward(&self, g: &mut Graph, x: Value, mask_bias: Value) -> Result<Value> {
        let split = [0, 0, self.num_heads as i64, self.head_dim as i64];
        let q = self.query.forward(g, x)?;
        let q = g.reshape(q, &split)?;
        let q = g.transpose(q, &[0, 2, 1, 3])?;
        let k = self.key.forward(g, x)?;
        let k = g.reshape(k, &split)?;
        let k = g.transpose(k, &[0, 2, 3, 1])?;
        let v = self.value.forward(g, x)?;
        let v = g.reshape(v, &split)?;
        let v = g.transpose(v, &[0, 2, 1, 3])?;
        let scores = g.matmul(q, k)?;
        let scale = g.scalar(1.0 / (self.head_dim as f32).sqrt())?;
        let scores = g.mul(scores, scale)?;
        let scores = g.add(scores, mask_bias)?;
        let probs = g.softmax(scores, -1)?;
        let ctx = g.matmul(probs, v)?;
        let ctx = g.transpose(ctx, &[0, 2, 1, 3])?;
        g.reshape(ctx, &[0, 0, (self.num_heads * self.head_dim) as i64])
    }
}

/// Attention output projection, residual and LayerNorm.
#[derive(Debug, Clone)]
pub struct BertSelfOutput {
    dense: Linear,
    layer_norm: LayerNorm,
}

impl BertSelfOutput {
    /// Loads `dense` and `LayerNorm`.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertSelfOutput> {
        Ok(BertSelfOutput {
            dense: Linear::load(g, &p.pp("dense"), c.hidden_size, c.hidden_size)?,
            layer_norm: LayerNorm::load(g, &p.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
        })
    }

    /// `LayerNorm(dense(h) + residual)`.
    pub fn forward(&self, g: &mut Graph, h: Value, residual: Value) -> Result<Value> {
        let y = self.dense.forward(g, h)?;
        let y = g.add(y, residual)?;
        self.layer_norm.forward(g, y)
    }
}

/// Self-attention followed by its output block.
#[derive(Debug, Clone)]
pub struct BertAttention {
    self_attention: BertSelfAttention,
    output: BertSelfOutput,
}

impl BertAttention {
    /// Loads `self` and `output`.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertAttention> {
        Ok(BertAttention {
            self_attention: BertSelfAttention::load(g, &p.pp("self"), c)?,
            output: BertSelfOutput::load(g, &p.pp("output"), c)?,
        })
    }

    /// Attention block on `x`.
    pub fn forward(&self, g: &mut Graph, x: Value, mask_bias: Value) -> Result<Value> {
        let h = self.self_attention.forward(g, x, mask_bias)?;
        self.output.forward(g, h, x)
    }
}

/// Feed-forward expansion with GELU.
#[derive(Debug, Clone)]
pub struct BertIntermediate {
    dense: Linear,
}

impl BertIntermediate {
    /// Loads `dense`.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertIntermediate> {
        Ok(BertIntermediate {
            dense: Linear::load(g, &p.pp("dense"), c.hidden_size, c.intermediate_size)?,
        })
    }

    /// `gelu(dense(x))`.
    pub fn forward(&self, g: &mut Graph, x: Value) -> Result<Value> {
        let y = self.dense.forward(g, x)?;
        g.gelu(y)
    }
}

/// Feed-forward projection, residual and LayerNorm.
#[derive(Debug, Clone)]
pub struct BertOutput {
    dense: Linear,
    layer_norm: LayerNorm,
}

impl BertOutput {
    /// Loads `dense` and `LayerNorm`.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertOutput> {
        Ok(BertOutput {
            dense: Linear::load(g, &p.pp("dense"), c.intermediate_size, c.hidden_size)?,
            layer_norm: LayerNorm::load(g, &p.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
        })
    }

    /// `LayerNorm(dense(h) + residual)`.
    pub fn forward(&self, g: &mut Graph, h: Value, residual: Value) -> Result<Value> {
        let y = self.dense.forward(g, h)?;
        let y = g.add(y, residual)?;
        self.layer_norm.forward(g, y)
    }
}

/// One transformer layer.
#[derive(Debug, Clone)]
pub struct BertLayer {
    attention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
}

impl BertLayer {
    /// Loads `attention`, `intermediate` and `output`.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertLayer> {
        Ok(BertLayer {
            attention: BertAttention::load(g, &p.pp("attention"), c)?,
            intermediate: BertIntermediate::load(g, &p.pp("intermediate"), c)?,
            output: BertOutput::load(g, &p.pp("output"), c)?,
        })
    }

    /// The layer on `x` `[batch, seq, hidden]`.
    pub fn forward(&self, g: &mut Graph, x: Value, mask_bias: Value) -> Result<Value> {
        let a = self.attention.forward(g, x, mask_bias)?;
        let i = self.intermediate.forward(g, a)?;
        self.output.forward(g, i, a)
    }
}

/// The stack of layers.
#[derive(Debug, Clone)]
pub struct BertEncoder {
    layers: Vec<BertLayer>,
}

impl BertEncoder {
    /// Loads `layer.0` .. `layer.{n-1}`.
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertEncoder> {
        let layers = (0..c.num_hidden_layers)
            .map(|i| BertLayer::load(g, &p.pp(&format!("layer.{i}")), c))
            .collect::<Result<_>>()?;
        Ok(BertEncoder { layers })
    }

    /// All layers in turn.
    pub fn forward(&self, g: &mut Graph, mut x: Value, mask_bias: Value) -> Result<Value> {
        for layer in &self.layers {
            x = layer.forward(g, x, mask_bias)?;
        }
        Ok(x)
    }
}

/// What [`BertModel::forward`] produces.
#[derive(Debug, Clone, Copy)]
pub struct BertForward {
    /// Last hidden states `[batch, seq, hidden]`.
    pub hidden: Value,
    /// Gathered word-embedding rows `[batch, seq, hidden]`.
    pub word_rows: Value,
}

/// The BERT encoder without pooler.
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    encoder: BertEncoder,
}

impl BertModel {
    /// Loads `embeddings.*` and `encoder.*` (canonical names, no `bert.` prefix).
    pub fn load(g: &mut Graph, p: &Params, c: &BertConfig) -> Result<BertModel> {
        Ok(BertModel {
            embeddings: BertEmbeddings::load(g, &p.pp("embeddings"), c)?,
            encoder: BertEncoder::load(g, &p.pp("encoder"), c)?,
        })
    }

    /// Every tensor [`BertModel::load`] reads, with its shape, in load order (canonical
    /// names). Loading with [`ParamSource::Inputs`] declares exactly these tensors as graph
    /// inputs, so the list is read off a scratch graph rather than written out a second time.
    pub fn tensors(c: &BertConfig) -> Result<Vec<(String, Vec<usize>)>> {
        let mut g = Graph::new("bert_tensors");
        BertModel::load(&mut g, &Params::new(ParamSource::Inputs), c)?;
        g.inputs()
            .iter()
            .map(|&v| {
                let shape = g
                    .shape(v)
                    .iter()
                    .map(Dim::fixed)
                    .collect::<Option<Vec<_>>>();
                let shape = shape.ok_or_else(|| {
                    Error::Graph(format!("parameter `{}` has a symbolic shape", g.name(v)))
                })?;
                Ok((g.name(v).to_string(), shape))
            })
            .collect()
    }

    /// Token ids, attention mask and token types (int64 `[batch, seq]`) to hidden states.
    pub fn forward(
        &self,
        g: &mut Graph,
        input_ids: Value,
        attention_mask: Value,
        token_type_ids: Value,
    ) -> Result<BertForward> {
        let (x, word_rows) = self.embeddings.forward(g, input_ids, token_type_ids)?;
        // (1 - mask) * large negative, broadcast over heads and query positions.
        let m = g.cast(attention_mask, DType::F32)?;
        let one = g.scalar(1.0)?;
        let inv = g.sub(one, m)?;
        let neg = g.scalar(MASK_NEGATIVE)?;
        let bias = g.mul(inv, neg)?;
        let bias = g.unsqueeze(bias, &[1, 2])?;
        let hidden = self.encoder.forward(g, x, bias)?;
        Ok(BertForward { hidden, word_rows })
    }
}

/// Masked mean over the sequence: `sum(h * mask) / max(sum(mask), 1e-9)`.
pub fn mean_pool(g: &mut Graph, hidden: Value, attention_mask: Value) -> Result<Value> {
    let m = g.cast(attention_mask, DType::F32)?;
    let m = g.unsqueeze(m, &[-1])?;
    let hm = g.mul(hidden, m)?;
    let sum = g.reduce_sum(hm, &[1], false)?;
    let count = g.reduce_sum(m, &[1], false)?;
    let floor = g.scalar(1e-9)?;
    let count = g.max(count, floor)?;
    g.div(sum, count)
}

/// The first (`[CLS]`) token's state.
pub fn cls_pool(g: &mut Graph, hidden: Value) -> Result<Value> {
    let one = g.const_i64(&[1])?;
    let first = g.slice(hidden, &[0], one, &[1])?;
    g.squeeze(first, &[1])
}

/// `x / max(||x||, 1e-12)` over the last axis.
pub fn l2_normalize(g: &mut Graph, x: Value) -> Result<Value> {
    let sq = g.mul(x, x)?;
    let ss = g.reduce_sum(sq, &[-1], true)?;
    let norm = g.sqrt(ss)?;
    let floor = g.scalar(1e-12)?;
    let norm = g.max(norm, floor)?;
    g.div(x, norm)
}

/// Pooling and normalisation of an encoder graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSpec {
    /// Pooling of token states.
    pub pooling: Pooling,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
}

/// An encoder graph with handles to its interesting values.
#[derive(Debug, Clone)]
pub struct BuiltEncoder {
    /// The graph; `embedding` is its only output.
    pub graph: Graph,
    /// Parameters in graph order: canonical name and value (graph inputs or initializers).
    pub parameters: Vec<(String, Value)>,
    /// `input_ids`, `attention_mask`, `token_type_ids`.
    pub token_inputs: [Value; 3],
    /// Gathered word-embedding rows `[batch, seq, hidden]`.
    pub word_rows: Value,
    /// The output `embedding` `[batch, dim]`.
    pub embedding: Value,
}

/// Builds the full encoder: parameters, token inputs, BERT, pooling, optional normalisation,
/// output `embedding`.
pub fn build_encoder(
    config: &BertConfig,
    source: &ParamSource,
    spec: EncoderSpec,
) -> Result<BuiltEncoder> {
    let mut g = Graph::new("ltre_bert");
    // Loading only creates parameter values, so they are exactly the values it added.
    let before = g.values.len();
    let model = BertModel::load(&mut g, &Params::new(*source), config)?;
    let parameters: Vec<(String, Value)> = (before..g.values.len())
        .map(|i| Value(i as u32))
        .map(|v| (g.name(v).to_string(), v))
        .collect();
    let tokens = vec![Dim::sym("batch"), Dim::sym("seq")];
    let input_ids = g.input(io_names::INPUT_IDS, DType::I64, tokens.clone())?;
    let attention_mask = g.input(io_names::ATTENTION_MASK, DType::I64, tokens.clone())?;
    let token_type_ids = g.input(io_names::TOKEN_TYPE_IDS, DType::I64, tokens)?;
    let out = model.forward(&mut g, input_ids, attention_mask, token_type_ids)?;
    let pooled = match spec.pooling {
        Pooling::Mean => mean_pool(&mut g, out.hidden, attention_mask)?,
        Pooling::Cls => cls_pool(&mut g, out.hidden)?,
    };
    let embedding = if spec.normalize {
        l2_normalize(&mut g, pooled)?
    } else {
        pooled
    };
    let embedding = g.output(io_names::EMBEDDING, embedding)?;
    Ok(BuiltEncoder {
        graph: g,
        parameters,
        token_inputs: [input_ids, attention_mask, token_type_ids],
        word_rows: out.word_rows,
        embedding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_what_the_module_structs_load() {
        let c: BertConfig = serde_json::from_str(
            r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
                "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":12}"#,
        )
        .unwrap();
        let t = BertModel::tensors(&c).unwrap();
        assert_eq!(t.len(), 5 + 16 * 2);
        let shape = |name: &str| t.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
        assert_eq!(
            shape("embeddings.word_embeddings.weight"),
            Some(vec![10, 8])
        );
        assert_eq!(
            shape("embeddings.position_embeddings.weight"),
            Some(vec![12, 8])
        );
        assert_eq!(
            shape("encoder.layer.1.intermediate.dense.weight"),
            Some(vec![16, 8])
        );
        assert_eq!(
            shape("encoder.layer.1.output.dense.weight"),
            Some(vec![8, 16])
        );
        assert_eq!(
            shape("encoder.layer.0.attention.output.LayerNorm.bias"),
            Some(vec![8])
        );
    }
}
