//! # tantivy-ltre
//!
//! Dense retrieval inside Tantivy: a vector field stored in each segment (through Tantivy 0.27's
//! segment plugin API), a [`DenseQuery`] that composes with Tantivy queries, and hybrid
//! lexical + dense search as a Tantivy collector ([`HybridCollector`] with [`Rrf`],
//! [`LinearFusion`] or [`Cascade`]).
//!
//! - [`field`]: [`DenseField`], its schema declaration ([`add_dense_field`]), the on-disk
//!   format ([`field::format`]) and the segment plugin. Vectors live next to the postings,
//!   follow merges and deletes, are removed with their segment and are read zero-copy from
//!   memory-mapped segment files.
//! - [`ann`]: optional per-segment Faiss index (HNSW, IVF, IVF-PQ) for large segments.
//! - [`query`]: [`DenseQuery`], exact top-k by inner product (or approximate with [`ann`]).
//! - [`scan`]: the exact-scan kernel (blocked inner products into a bounded heap).
//! - [`collector`]: [`HybridCollector`], one search fusing the lexical query's BM25 with the
//!   dense query; its fruit is a list of [`HybridHit`]s.
//! - [`fusion`]: the [`Fusion`] trait, its implementations and [`HybridSearcher`], a wrapper
//!   around the collector.
//! - [`lexical`]: the BM25 bag-of-words query from free text and the external id of a hit.
//! - [`writer`]: [`DenseIndexWriter`] (validates vectors, keeps the good documents of a batch),
//!   [`EmbeddingWriter`] (embeds text with a [`TextEmbedder`] in batches).
//! - [`encoders`]: the ltre index directory in one import: its layout and `ltre.json`
//!   ([`layout`]), versioned query encoders with activation and rollback ([`registry`]) and
//!   document-vector checksums ([`checksum`]).
//! - `live` (feature `encoder`): `LiveEncoder`, the active query encoder, reloaded when
//!   an activation or rollback changes it.
//! - [`finetune`]: fine-tunes an index's query encoder in place from judged queries (LTRe),
//!   with held-out selection, a guarded deployment and a report; works on any schema.
//! - [`embedder`]: loads an exported model directory as a [`TextEmbedder`].
//! - [`feedback`]: the application's clicks and ratings, logged in the index directory
//!   (crash-safe, concurrent appends) and aggregated into training data for [`finetune`].
//!
//! Whole ltre indexes, as library calls (the `ltre-cli` commands are thin clients of these):
//!
//! - [`index`]: [`LtreIndex`] opens an ltre index directory (config, dense plugin, BM25 and id
//!   fields, the query encoder followed live or pinned); [`search`]: [`LtreIndex::search`] runs
//!   BM25, dense or hybrid retrieval from [`SearchOptions`].
//! - [`eval`]: judged queries through an [`LtreIndex`], scored (nDCG@10, MRR@10, Recall@100).
//! - [`corpus`]: indexes a BEIR corpus (resumable), installing the base encoder.
//! - [`vectors`]: document vectors as Parquet shards (embed a corpus shard, read and check a
//!   directory of shards), which [`corpus`] can index instead of running the encoder.
//! - [`migrate`]: an existing Tantivy index gains the dense field (a new, verified copy).
//! - [`report`]: the reports of these workflows as the lines a front end prints.
//! - [`verify`]: the full integrity check of an index's segment files ([`verify::verify_index`]):
//!   checksums of the dense field's files and Tantivy's, per segment. Opening a segment's vectors
//!   runs only the cheap check (header and lengths); a failure names the segment and the file.
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
//! 4. Query with [`DenseQuery`], alone, with a filter, inside a `BooleanQuery`, or fuse it with
//!    a lexical query through [`HybridCollector`] (or [`HybridSearcher`]).
//!
//! Tantivy fixes an index's schema and plugin set when it is created, so an existing, non-empty
//! index cannot gain the dense field in place (`TantivyError::UnexpectedPlugin`): create a new
//! index with the extended schema and re-add the documents (from your source of truth, or from
//! the stored fields of the old index with [`migrate::add_dense_field_to_index`]) with their
//! vectors.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tantivy::collector::Count;
//! use tantivy::query::TermQuery;
//! use tantivy::schema::{IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
//! use tantivy::{Index, TantivyDocument, Term};
//! use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter};
//! use tantivy_ltre::{HybridCollector, Rrf};
//!
//! // 1-2. Schema with a 3-d dense field, index created with the plugin.
//! let mut builder = Schema::builder();
//! let body = builder.add_text_field("body", TEXT | STORED);
//! let lang = builder.add_text_field("lang", STRING);
//! add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(3));
//! let schema = builder.build();
//! let dense = DenseField::from_schema(&schema)?;
//! let index = Index::builder().schema(schema).register_plugin(dense.plugin()).create_in_ram()?;
//!
//! // 3. Documents with their vectors (an embedder would compute them from the text).
//! let mut writer = DenseIndexWriter::new(index.writer_with_num_threads(1, 15_000_000)?, dense.clone());
//! for (text, l, vector) in [
//!     ("rust search engine", "en", [1.0, 0.0, 0.0]),
//!     ("vector search in rust", "en", [0.8, 0.6, 0.0]),
//!     ("recherche vectorielle en rust", "fr", [0.8, 0.6, 0.0]),
//!     ("cooking pasta", "en", [0.0, 0.0, 1.0]),
//! ] {
//!     let mut doc = TantivyDocument::new();
//!     doc.add_text(body, text);
//!     doc.add_text(lang, l);
//!     writer.add_document(doc, Some(&vector))?;
//! }
//! writer.commit()?;
//!
//! // 4. Hybrid search among English documents: BM25 on "vector" (the query searched) fused by
//! //    reciprocal ranks with the dense query held by the collector, the same filter on both.
//! let searcher = index.reader()?.searcher();
//! let english = TermQuery::new(Term::from_field_text(lang, "en"), IndexRecordOption::Basic);
//! let vector = TermQuery::new(Term::from_field_text(body, "vector"), IndexRecordOption::WithFreqs);
//! let collector = HybridCollector::new(&dense, &[0.7, 0.7, 0.0], Rrf::default(), 2)?
//!     .with_filter(Box::new(english));
//! let lexical = collector.filtered_lexical(&vector);
//! let (matches, hits) = searcher.search(&*lexical, &(Count, collector))?;
//! assert_eq!(matches, 1); // English documents with "vector"
//! let top: TantivyDocument = searcher.doc(hits[0].address)?;
//! assert_eq!(top.get_first(body).and_then(|v| v.as_str()), Some("vector search in rust"));
//! assert_eq!(hits[0].lexical.map(|leg| leg.rank), Some(1)); // first on both legs
//! assert_eq!(hits[0].dense.map(|leg| leg.rank), Some(1));
//! assert!(hits[1].lexical.is_none()); // "rust search engine": dense only
//! # Ok(())
//! # }
//! ```
pub mod ann;
pub mod checksum;
pub mod collector;
pub mod corpus;
mod corpus_resume;
pub mod embedder;
pub mod encoders;
pub mod error;
pub mod eval;
pub mod feedback;
pub mod field;
pub mod finetune;
pub mod fusion;
pub mod index;
pub mod layout;
pub mod lexical;
#[cfg(feature = "encoder")]
pub mod live;
pub mod migrate;
pub mod query;
pub mod registry;
pub mod registry_log;
pub mod report;
pub mod scan;
pub mod search;
pub mod vectors;
pub mod verify;
pub mod writer;

pub use ann::{AnnOptions, AnnParams};
pub use collector::{HybridCollector, HybridHit, LegHit};
pub use embedder::{load_embedder, EmbedderOptions};
pub use error::{Error, Result, VectorError};
pub use field::{add_dense_field, DenseField, DenseFieldOptions, SegmentVectors, DENSE_TYPE_NAME};
pub use fusion::{Cascade, Fusion, HybridSearcher, LinearFusion, Normalization, Rrf};
pub use index::{EncoderChoice, LtreIndex, OpenOptions};
pub use query::{DenseQuery, SearchMode};
pub use search::{FusionMethod, Hit, RetrievalMode, SearchOptions};
pub use writer::{BatchReport, DenseIndexWriter, EmbeddingWriter, TextEmbedder};
