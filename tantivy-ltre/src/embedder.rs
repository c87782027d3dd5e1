//! Loading the text embedder of an exported model directory.
//!
//! With the `encoder` feature (default), [`load_embedder`] opens an `ltre_core::Encoder`;
//! without it, it returns an error saying so, and everything else in this crate works with any
//! [`TextEmbedder`].
use std::path::Path;

use crate::error::Result;
use crate::writer::TextEmbedder;

/// Runtime options of [`load_embedder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedderOptions {
    /// ONNX Runtime intra-op threads (0: the encoder's default, every available core).
    pub threads: usize,
    /// Texts per encoder call.
    pub batch_size: usize,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        EmbedderOptions {
            threads: 0,
            batch_size: 32,
        }
    }
}

/// Opens the exported model directory `dir` as a [`TextEmbedder`].
#[cfg(feature = "encoder")]
pub fn load_embedder(dir: &Path, options: EmbedderOptions) -> Result<Box<dyn TextEmbedder>> {
    let mut encoder_options = ltre_core::encoder::EncoderOptions {
        batch_size: options.batch_size.max(1),
        ..Default::default()
    };
    if options.threads > 0 {
        encoder_options.threads = options.threads;
    }
    Ok(Box::new(ltre_core::Encoder::load_with(
        dir,
        encoder_options,
    )?))
}

/// Opens the exported model directory `dir` as a [`TextEmbedder`].
#[cfg(not(feature = "encoder"))]
pub fn load_embedder(dir: &Path, _options: EmbedderOptions) -> Result<Box<dyn TextEmbedder>> {
    Err(crate::Error::Invalid(format!(
        "cannot load {}: tantivy-ltre was built without the `encoder` feature (ltre_core::Encoder)",
        dir.display()
    )))
}

#[cfg(feature = "encoder")]
impl TextEmbedder for ltre_core::Encoder {
    fn dim(&self) -> usize {
        ltre_core::Encoder::dim(self)
    }

    fn embed_documents(&mut self, texts: &[&str]) -> Result<ndarray::Array2<f32>> {
        Ok(self.encode_documents(texts)?)
    }

    fn embed_queries(&mut self, texts: &[&str]) -> Result<ndarray::Array2<f32>> {
        Ok(self.encode_queries(texts)?)
    }
}
