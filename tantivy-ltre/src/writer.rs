//! Adding documents with vectors: [`DenseIndexWriter`] validates vectors before Tantivy sees
//! them (so one bad vector never costs the rest of a batch), and [`EmbeddingWriter`] computes
//! the vectors from text with a [`TextEmbedder`] in batches.
use indicatif::ProgressBar;
use ndarray::Array2;
use tantivy::schema::Value;
use tantivy::{IndexWriter, Opstamp, TantivyDocument};

use crate::error::{Error, Result, VectorError};
use crate::field::{encode_vector, validate_vector, DenseField};

/// Anything that turns texts into embeddings (one row per text).
///
/// `ltre_core::Encoder` implements it (feature `encoder`); tests use synthetic embedders.
/// Methods take `&mut self` so that an implementation may own a session that needs it.
pub trait TextEmbedder {
    /// The embedding dimension.
    fn dim(&self) -> usize;
    /// Embeds documents (the document tower).
    fn embed_documents(&mut self, texts: &[&str]) -> Result<Array2<f32>>;
    /// Embeds queries (the query tower; may differ from the document tower after LTRe training).
    fn embed_queries(&mut self, texts: &[&str]) -> Result<Array2<f32>>;
}

impl<E: TextEmbedder + ?Sized> TextEmbedder for &mut E {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn embed_documents(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        (**self).embed_documents(texts)
    }
    fn embed_queries(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        (**self).embed_queries(texts)
    }
}

impl<E: TextEmbedder + ?Sized> TextEmbedder for Box<E> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn embed_documents(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        (**self).embed_documents(texts)
    }
    fn embed_queries(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        (**self).embed_queries(texts)
    }
}

/// What happened to a batch of documents.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchReport {
    /// Documents handed to Tantivy.
    pub added: usize,
    /// Refused documents: position in the batch and why. The others were added.
    pub rejected: Vec<(usize, VectorError)>,
}

impl BatchReport {
    fn absorb(&mut self, other: BatchReport, offset: usize) {
        self.added += other.added;
        self.rejected
            .extend(other.rejected.into_iter().map(|(i, e)| (i + offset, e)));
    }
}

/// An `IndexWriter` wrapper that validates each document's vector before adding it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tantivy::schema::Schema;
/// use tantivy::{Index, TantivyDocument};
/// use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter, VectorError};
/// let mut builder = Schema::builder();
/// add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(2));
/// let schema = builder.build();
/// let dense = DenseField::from_schema(&schema)?;
/// let index = Index::builder().schema(schema).register_plugin(dense.plugin()).create_in_ram()?;
/// let mut writer = DenseIndexWriter::new(index.writer_with_num_threads(1, 15_000_000)?, dense);
/// let report = writer.add_documents(vec![
///     (TantivyDocument::new(), Some(vec![1.0, 0.0])),
///     (TantivyDocument::new(), Some(vec![f32::NAN, 0.0])),
///     (TantivyDocument::new(), Some(vec![0.0, 1.0])),
/// ])?;
/// assert_eq!(report.added, 2);
/// assert_eq!(report.rejected[0].0, 1);
/// assert!(matches!(report.rejected[0].1, VectorError::NotFinite { index: 0, .. }));
/// writer.commit()?;
/// # Ok(())
/// # }
/// ```
pub struct DenseIndexWriter {
    writer: IndexWriter,
    dense: DenseField,
}

impl DenseIndexWriter {
    /// Wraps a writer of an index whose schema holds `dense`.
    pub fn new(writer: IndexWriter, dense: DenseField) -> DenseIndexWriter {
        DenseIndexWriter { writer, dense }
    }

    /// The dense field.
    pub fn dense(&self) -> &DenseField {
        &self.dense
    }

    /// The wrapped writer (deletes, commits, merges...).
    pub fn writer(&self) -> &IndexWriter {
        &self.writer
    }

    /// The wrapped writer, mutably.
    pub fn writer_mut(&mut self) -> &mut IndexWriter {
        &mut self.writer
    }

    /// Unwraps the writer.
    pub fn into_inner(self) -> IndexWriter {
        self.writer
    }

    /// Commits (see `IndexWriter::commit`).
    pub fn commit(&mut self) -> Result<Opstamp> {
        Ok(self.writer.commit()?)
    }

    /// Checks `vector` and attaches it to `doc`, or checks the vector `doc` already carries
    /// (from [`DenseField::set_vector`]); a document may carry at most one.
    fn prepare(
        &self,
        doc: &mut TantivyDocument,
        vector: Option<&[f32]>,
    ) -> Result<(), VectorError> {
        let field = self.dense.field();
        let mut attached = 0;
        for value in doc.get_all(field) {
            let bytes = value.as_custom().unwrap_or(&[]);
            attached += 1;
            if bytes.len() != self.dense.dim() * 4 {
                return Err(VectorError::BadPayload {
                    bytes: bytes.len(),
                    dim: self.dense.dim(),
                });
            }
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            validate_vector(&v, self.dense.dim())?;
        }
        if attached > 1 {
            return Err(VectorError::Duplicate);
        }
        match vector {
            Some(_) if attached > 0 => Err(VectorError::Duplicate),
            Some(v) => {
                validate_vector(v, self.dense.dim())?;
                doc.add_custom(field, &encode_vector(v));
                Ok(())
            }
            None if attached > 0 => Ok(()),
            None => self.dense.validate(None),
        }
    }

    /// Validates and adds one document. A refused vector is an [`Error::InvalidVector`] and the
    /// document is not added.
    pub fn add_document(
        &self,
        mut doc: TantivyDocument,
        vector: Option<&[f32]>,
    ) -> Result<Opstamp> {
        self.prepare(&mut doc, vector)?;
        Ok(self.writer.add_document(doc)?)
    }

    /// Validates every document of a batch, adds the good ones and reports the refused ones.
    /// Fails only when Tantivy itself fails.
    pub fn add_documents<I>(&self, batch: I) -> Result<BatchReport>
    where
        I: IntoIterator<Item = (TantivyDocument, Option<Vec<f32>>)>,
    {
        let mut report = BatchReport::default();
        for (position, (mut doc, vector)) in batch.into_iter().enumerate() {
            match self.prepare(&mut doc, vector.as_deref()) {
                Ok(()) => {
                    self.writer.add_document(doc)?;
                    report.added += 1;
                }
                Err(e) => report.rejected.push((position, e)),
            }
        }
        Ok(report)
    }
}

/// Adds documents whose vectors are computed from text by a [`TextEmbedder`], in batches.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ndarray::Array2;
/// use tantivy::schema::{Schema, TEXT};
/// use tantivy::{Index, TantivyDocument};
/// use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter};
/// use tantivy_ltre::{EmbeddingWriter, TextEmbedder};
///
/// /// Embeds a text as (length, 1): enough to show the plumbing.
/// struct Lengths;
/// impl TextEmbedder for Lengths {
///     fn dim(&self) -> usize { 2 }
///     fn embed_documents(&mut self, texts: &[&str]) -> tantivy_ltre::Result<Array2<f32>> {
///         Ok(Array2::from_shape_fn((texts.len(), 2), |(i, j)| if j == 0 { texts[i].len() as f32 } else { 1.0 }))
///     }
///     fn embed_queries(&mut self, texts: &[&str]) -> tantivy_ltre::Result<Array2<f32>> {
///         self.embed_documents(texts)
///     }
/// }
///
/// let mut builder = Schema::builder();
/// let text = builder.add_text_field("text", TEXT);
/// add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(2).required());
/// let schema = builder.build();
/// let dense = DenseField::from_schema(&schema)?;
/// let index = Index::builder().schema(schema).register_plugin(dense.plugin()).create_in_ram()?;
/// let mut writer = DenseIndexWriter::new(index.writer_with_num_threads(1, 15_000_000)?, dense);
/// let mut embedding = EmbeddingWriter::new(&writer, Lengths, 2);
/// for body in ["a", "bb", "ccc"] {
///     let mut doc = TantivyDocument::new();
///     doc.add_text(text, body);
///     embedding.add(doc, body.to_string())?;
/// }
/// let report = embedding.finish()?;
/// assert_eq!(report.added, 3);
/// writer.commit()?;
/// # Ok(())
/// # }
/// ```
pub struct EmbeddingWriter<'w, E: TextEmbedder> {
    writer: &'w DenseIndexWriter,
    embedder: E,
    batch_size: usize,
    pending: Vec<(TantivyDocument, String)>,
    seen: usize,
    report: BatchReport,
    progress: ProgressBar,
}

impl<'w, E: TextEmbedder> EmbeddingWriter<'w, E> {
    /// Embeds `batch_size` texts at a time (at least 1).
    pub fn new(writer: &'w DenseIndexWriter, embedder: E, batch_size: usize) -> Self {
        EmbeddingWriter {
            writer,
            embedder,
            batch_size: batch_size.max(1),
            pending: Vec::new(),
            seen: 0,
            report: BatchReport::default(),
            progress: ProgressBar::hidden(),
        }
    }

    /// Advances `progress` by one per document added or refused.
    pub fn with_progress(mut self, progress: ProgressBar) -> Self {
        self.progress = progress;
        self
    }

    /// Queues a document with the text to embed for it; embeds and adds a batch when full.
    pub fn add(&mut self, doc: TantivyDocument, text: String) -> Result<()> {
        self.pending.push((doc, text));
        if self.pending.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Embeds and adds the queued documents.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
        let embeddings = self.embedder.embed_documents(&texts)?;
        if embeddings.nrows() != batch.len() {
            return Err(Error::Invalid(format!(
                "the embedder returned {} rows for {} texts",
                embeddings.nrows(),
                batch.len()
            )));
        }
        let n = batch.len();
        let docs = batch
            .into_iter()
            .zip(embeddings.rows())
            .map(|((doc, _), row)| (doc, Some(row.to_vec())));
        let report = self.writer.add_documents(docs)?;
        self.report.absorb(report, self.seen);
        self.seen += n;
        self.progress.inc(n as u64);
        Ok(())
    }

    /// Flushes the last batch and returns what happened to every document (positions count
    /// from the first document given to this writer).
    pub fn finish(mut self) -> Result<BatchReport> {
        self.flush()?;
        Ok(self.report)
    }
}
