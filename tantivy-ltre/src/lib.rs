//! # tantivy-ltre
//!
//! Dense retrieval inside Tantivy: a vector field stored in each segment (through Tantivy 0.27's
//! segment plugin API), a [`DenseQuery`] that composes with Tantivy queries, and hybrid
//! lexical + dense search ([`HybridSearcher`] with [`Rrf`], [`LinearFusion`] or [`Cascade`]).
//!
//! - [`field`]: [`DenseField`], its schema declaration ([`add_dense_field`]) and the segment
//!   plugin. Vectors live next to the postings, follow merges and deletes, are removed with
//!   their segment and are read zero-copy from memory-mapped segment files.
//! - [`ann`]: optional per-segment Faiss index (HNSW, IVF, IVF-PQ) for large segments.
//! - [`query`]: [`DenseQuery`], exact top-k by inner product (or approximate with [`ann`]).
//! - [`fusion`]: the [`Fusion`] trait and the hybrid searcher.
//! - [`lexical`]: the BM25 bag-of-words query from free text and the external id of a hit.
//! - [`writer`]: [`DenseIndexWriter`] (validates vectors, keeps the good documents of a batch),
//!   [`EmbeddingWriter`] (embeds text with a [`TextEmbedder`] in batches).
//! - [`encoders`]: the ltre index directory layout (`ltre.json`, `encoders/<id>`, `ACTIVE`),
//!   versioned query encoders with activation and rollback, document-vector checksums.
//! - `live` (feature `encoder`): `LiveEncoder`, the active query encoder, reloaded when
//!   an activation or rollback changes it.
//! - [`finetune`]: fine-tunes an index's query encoder in place from judged queries (LTRe),
//!   with held-out selection, a guarded deployment and a report; works on any schema.
//! - [`embedder`]: loads an exported model directory as a [`TextEmbedder`].
//!
//! # Adding a dense field to an application's index
//!
//! 1. Declare the field in the schema with [`add_dense_field`] (dimension and, optionally, an
//!    approximate index for large segments).
//! 2. Build the [`DenseField`] handle from the schema and register its plugin when creating the
//!    index; after `Index::open*`, call [`DenseField::register`] before creating a writer or a
//!    reader (Tantivy does not persist plugins, and refuses to write without them).
//! 3. Add documents through [`DenseIndexWriter`] (or [`DenseField::set_vector`] + the plain
//!    `IndexWriter`).
//! 4. Query with [`DenseQuery`], alone, with a filter, inside a `BooleanQuery`, or through
//!    [`HybridSearcher`].
//!
//! Tantivy fixes an index's schema and plugin set when it is created, so an existing, non-empty
//! index cannot gain the dense field in place (`TantivyError::UnexpectedPlugin`): create a new
//! index with the extended schema and re-add the documents (from your source of truth, or from
//! the stored fields of the old index) with their vectors.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tantivy::query::TermQuery;
//! use tantivy::schema::{IndexRecordOption, Schema, Value, STORED, TEXT};
//! use tantivy::{Index, TantivyDocument, Term};
//! use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter};
//! use tantivy_ltre::{HybridSearcher, Rrf};
//!
//! // 1-2. Schema with a 3-d dense field, index created with the plugin.
//! let mut builder = Schema::builder();
//! let body = builder.add_text_field("body", TEXT | STORED);
//! add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(3));
//! let schema = builder.build();
//! let dense = DenseField::from_schema(&schema)?;
//! let index = Index::builder().schema(schema).register_plugin(dense.plugin()).create_in_ram()?;
//!
//! // 3. Documents with their vectors (an embedder would compute them from the text).
//! let mut writer = DenseIndexWriter::new(index.writer_with_num_threads(1, 15_000_000)?, dense.clone());
//! for (text, vector) in [
//!     ("rust search engine", [1.0, 0.0, 0.0]),
//!     ("vector search in rust", [0.8, 0.6, 0.0]),
//!     ("cooking pasta", [0.0, 0.0, 1.0]),
//! ] {
//!     let mut doc = TantivyDocument::new();
//!     doc.add_text(body, text);
//!     writer.add_document(doc, Some(&vector))?;
//! }
//! writer.commit()?;
//!
//! // 4. Hybrid search: BM25 on "vector" fused with the dense query by reciprocal ranks.
//! let searcher = index.reader()?.searcher();
//! let lexical = TermQuery::new(Term::from_field_text(body, "vector"), IndexRecordOption::WithFreqs);
//! let hits = HybridSearcher::new(&searcher, &dense).search(&lexical, &[0.7, 0.7, 0.0], None, &Rrf::default(), 2)?;
//! let top: TantivyDocument = searcher.doc(hits[0].1)?;
//! assert_eq!(top.get_first(body).and_then(|v| v.as_str()), Some("vector search in rust"));
//! # Ok(())
//! # }
//! ```
pub mod ann;
pub mod embedder;
pub mod encoders;
pub mod error;
pub mod field;
pub mod finetune;
pub mod fusion;
pub mod lexical;
#[cfg(feature = "encoder")]
pub mod live;
pub mod query;
pub mod scan;
pub mod writer;

pub use ann::{AnnOptions, AnnParams};
pub use embedder::{load_embedder, EmbedderOptions};
pub use error::{Error, Result, VectorError};
pub use field::{add_dense_field, DenseField, DenseFieldOptions, SegmentVectors, DENSE_TYPE_NAME};
pub use fusion::{Cascade, Fusion, HybridSearcher, LinearFusion, Normalization, Rrf};
pub use query::{DenseQuery, SearchMode};
pub use writer::{BatchReport, DenseIndexWriter, EmbeddingWriter, TextEmbedder};
