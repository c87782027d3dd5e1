//! Tokenisation for the [`Encoder`](crate::Encoder): `tokenizer.json` in, padded `int64` id
//! matrices out.
//!
//! Hugging Face tokenizers often ship with fixed padding and truncation baked in (all-MiniLM-L6-v2
//! pads and truncates at 128). [`TextTokenizer`] turns padding off and truncates at the lengths
//! from the model's manifest, one for queries and one for documents, so that a batch is padded
//! only to its own longest sequence (dynamic padding).
//!
//! ```no_run
//! # fn main() -> ltre_core::Result<()> {
//! use ltre_core::tokenize::{TextKind, TextTokenizer};
//!
//! let tokenizer = TextTokenizer::from_file("model/tokenizer.json".as_ref(), 64, 256)?;
//! let batch = tokenizer.tokenize(&["a short query", "a slightly longer query text"], TextKind::Query)?;
//! assert_eq!(batch.len(), 2);
//! assert_eq!(batch.input_ids.shape(), batch.attention_mask.shape());
//! # Ok(())
//! # }
//! ```
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ndarray::Array2;
use serde_json::Value;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::{Error, Result};

/// Which side of the retrieval pair a text is on; selects the truncation length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextKind {
    /// A search query (`manifest.query_max_length`).
    Query,
    /// A document or passage (`manifest.document_max_length`).
    Document,
}

/// A padded batch of token ids, the three inputs of every ltre graph.
///
/// All three matrices are `[batch, seq]`, `seq` being the longest sequence in the batch (at least 1
/// when the batch is not empty). Padding positions hold the pad id, mask 0 and type 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids.
    pub input_ids: Array2<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Array2<i64>,
    /// Segment ids (0 for single-sequence inputs).
    pub token_type_ids: Array2<i64>,
}

impl TokenBatch {
    /// Pads `encodings` to the longest of them with `pad_id`.
    pub fn from_encodings(encodings: &[&Encoding], pad_id: u32) -> TokenBatch {
        let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let shape = (encodings.len(), seq);
        let mut input_ids = Array2::from_elem(shape, i64::from(pad_id));
        let mut attention_mask = Array2::zeros(shape);
        let mut token_type_ids = Array2::zeros(shape);
        for (row, enc) in encodings.iter().enumerate() {
            let ids = enc.get_ids();
            let types = enc.get_type_ids();
            let mask = enc.get_attention_mask();
            for col in 0..ids.len() {
                input_ids[[row, col]] = i64::from(ids[col]);
                token_type_ids[[row, col]] = i64::from(types[col]);
                attention_mask[[row, col]] = i64::from(mask[col]);
            }
        }
        TokenBatch {
            input_ids,
            attention_mask,
            token_type_ids,
        }
    }

    /// Number of texts in the batch.
    pub fn len(&self) -> usize {
        self.input_ids.nrows()
    }

    /// Whether the batch holds no text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Padded sequence length.
    pub fn seq_len(&self) -> usize {
        self.input_ids.ncols()
    }

    /// Number of real (unpadded) tokens of row `i`.
    pub fn token_count(&self, i: usize) -> usize {
        self.attention_mask
            .row(i)
            .iter()
            .filter(|&&m| m != 0)
            .count()
    }
}

/// A Hugging Face tokenizer with padding off and per-[`TextKind`] truncation.
#[derive(Clone)]
pub struct TextTokenizer {
    query: Tokenizer,
    document: Tokenizer,
    pad_id: u32,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("query_max_length", &self.max_length(TextKind::Query))
            .field("document_max_length", &self.max_length(TextKind::Document))
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and truncates queries at `query_max_length` and documents at
    /// `document_max_length` tokens (special tokens included).
    pub fn from_file(
        path: &Path,
        query_max_length: usize,
        document_max_length: usize,
    ) -> Result<TextTokenizer> {
        if !path.is_file() {
            return Err(Error::bad_file(
                path,
                "tokenizer not found; re-export the model with `ltre-cli export-onnx --model CHECKPOINT --out DIR`",
            ));
        }
        let base = load_tokenizer(path)?;
        // Keep the checkpoint's pad id (BERT: 0) but pad ourselves, per batch.
        let pad_id = base.get_padding().map(|p| p.pad_id).unwrap_or(0);
        let make = |max_length: usize, what: &str| -> Result<Tokenizer> {
            if max_length < 2 {
                return Err(Error::bad_file(
                    path,
                    format!("{what} max length {max_length} leaves no room for [CLS] and [SEP]; set it to at least 2 in manifest.json"),
                ));
            }
            let mut tok = base.clone();
            tok.with_padding(None);
            tok.with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| {
                Error::bad_file(path, format!("cannot set truncation to {max_length}: {e}"))
            })?;
            Ok(tok)
        };
        Ok(TextTokenizer {
            query: make(query_max_length, "query")?,
            document: make(document_max_length, "document")?,
            pad_id,
            path: path.to_path_buf(),
        })
    }

    /// Truncation length (tokens, specials included) for `kind`.
    pub fn max_length(&self, kind: TextKind) -> usize {
        self.tokenizer(kind)
            .get_truncation()
            .map(|t| t.max_length)
            .unwrap_or(usize::MAX)
    }

    /// The pad token id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    fn tokenizer(&self, kind: TextKind) -> &Tokenizer {
        match kind {
            TextKind::Query => &self.query,
            TextKind::Document => &self.document,
        }
    }

    /// Tokenises `texts` without padding, in order.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S], kind: TextKind) -> Result<Vec<Encoding>> {
        let tok = self.tokenizer(kind);
        let fail = |e: tokenizers::Error| {
            Error::Invalid(format!(
                "tokenizer {}: cannot tokenise text: {e}",
                self.path.display()
            ))
        };
        // The tokenizers crate panics on some inputs a loaded file can still set up; such a
        // panic becomes this call's error instead of unwinding through the caller.
        let encoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // A single text skips the thread-pool hand-off of `encode_batch_fast` (query latency).
            if let [text] = texts {
                return tok.encode_fast(text.as_ref(), true).map(|e| vec![e]);
            }
            let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
            tok.encode_batch_fast(inputs, true)
        }))
        .map_err(|panic| {
            Error::Invalid(format!(
                "tokenizer {}: failed while tokenising: {}",
                self.path.display(),
                panic_message(&*panic)
            ))
        })?;
        encoded.map_err(fail)
    }

    /// Tokenises `texts` and pads them to the longest one.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S], kind: TextKind) -> Result<TokenBatch> {
        let encodings = self.encode(texts, kind)?;
        let refs: Vec<&Encoding> = encodings.iter().collect();
        Ok(TokenBatch::from_encodings(&refs, self.pad_id))
    }
}

/// Reads `tokenizer.json`. The JSON is checked before the tokenizers crate sees it, because
/// its deserializer panics on a syntax error inside some sections (`decoder`) and accepts
/// post-processor templates that name undefined special tokens (a panic at encode time).
fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bad = |m: String| Error::bad_file(path, format!("cannot load tokenizer: {m}"));
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if let Some(post) = json.get("post_processor") {
        check_templates(post).map_err(|m| bad(format!("post_processor: {m}")))?;
    }
    std::panic::catch_unwind(|| Tokenizer::from_str(&text))
        .map_err(|panic| bad(panic_message(&*panic)))?
        .map_err(|e| bad(e.to_string()))
}

/// Every special token a `TemplateProcessing` template uses (also nested in a `Sequence`)
/// must be defined, with as many ids as tokens.
fn check_templates(v: &Value) -> std::result::Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(check_templates),
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("TemplateProcessing") {
                let specials = map.get("special_tokens").and_then(Value::as_object);
                for (name, special) in specials.into_iter().flatten() {
                    let len = |k: &str| special.get(k).and_then(Value::as_array).map(Vec::len);
                    if len("ids") != len("tokens") {
                        return Err(format!(
                            "special token `{name}` has a different number of ids and tokens"
                        ));
                    }
                }
                for template in ["single", "pair"] {
                    let pieces = map.get(template).and_then(Value::as_array);
                    for piece in pieces.into_iter().flatten() {
                        let id = piece.pointer("/SpecialToken/id").and_then(Value::as_str);
                        if let Some(id) =
                            id.filter(|id| !specials.is_some_and(|s| s.contains_key(*id)))
                        {
                            return Err(format!("template `{template}` uses special token `{id}`, which `special_tokens` does not define"));
                        }
                    }
                }
            }
            map.values().try_for_each(check_templates)
        }
        _ => Ok(()),
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the tokenizers crate panicked".into())
}
