//! Opening an ltre index directory as a library: [`LtreIndex`].
//!
//! An ltre index is a Tantivy index plus `ltre.json` ([`IndexConfig`]) and its query encoders
//! (`encoders/`), as built by `ltre-cli index`, [`crate::corpus::index_corpus`] or
//! [`crate::migrate::add_dense_field_to_index`]. [`LtreIndex::open`] reads the configuration,
//! registers the dense plugin, resolves the BM25 fields and the id field and loads the query
//! encoder; [`LtreIndex::search`] (in [`crate::search`]) then runs BM25, dense or hybrid
//! retrieval in one call.
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use tantivy_ltre::index::{EncoderChoice, LtreIndex, OpenOptions};
//! use tantivy_ltre::search::SearchOptions;
//!
//! // The active query encoder, followed live: `ltre-cli encoder activate` takes effect on the
//! // next query without reopening.
//! let index = LtreIndex::open("scifact-index")?;
//! let searcher = index.searcher();
//! for hit in index.search("what causes scurvy?", &SearchOptions::default())? {
//!     println!("{} {:.3} {}", hit.id, hit.score, index.title(&searcher, hit.address)?);
//! }
//!
//! // A pinned encoder and other BM25 fields.
//! let options = OpenOptions {
//!     query_encoder: EncoderChoice::Pinned("ltre-0001".into()),
//!     lexical_fields: Some(vec!["title".into(), "text".into()]),
//!     ..OpenOptions::default()
//! };
//! let pinned = LtreIndex::open_with("scifact-index", &options)?;
//! # Ok(())
//! # }
//! ```
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tantivy::query::Query;
use tantivy::schema::{Field, Value};
use tantivy::{DocAddress, Index, IndexReader, Searcher, TantivyDocument};

use crate::embedder::{load_embedder, EmbedderOptions};
use crate::error::{Error, Result};
use crate::field::DenseField;
use crate::layout::IndexConfig;
use crate::lexical::{bag_of_words, IdField};
use crate::registry::EncoderStore;
use crate::writer::TextEmbedder;

/// Which query encoder [`LtreIndex::open_with`] loads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EncoderChoice {
    /// None: BM25 only (opens fastest).
    None,
    /// The active encoder (`encoders/ACTIVE`), followed live with the `encoder` feature
    /// (without it, the encoder active at open time). Nothing is loaded for a lexical-only index.
    #[default]
    Active,
    /// The encoder with this id under `encoders/`, whatever is active.
    Pinned(String),
}

/// Options of [`LtreIndex::open_with`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The query encoder.
    pub query_encoder: EncoderChoice,
    /// BM25 fields (default: `text_fields` of `ltre.json`).
    pub lexical_fields: Option<Vec<String>>,
    /// Encoder intra-op threads (0: ONNX Runtime's default).
    pub threads: usize,
}

/// Queries per encoder call.
const QUERY_BATCH: usize = 64;

enum QueryEncoder {
    #[cfg(feature = "encoder")]
    Live(crate::live::LiveEncoder),
    Pinned {
        id: String,
        embedder: Mutex<Box<dyn TextEmbedder>>,
    },
}

/// An opened ltre index: the Tantivy index with its dense plugin registered, its reader, the
/// BM25 fields, the id field and the query encoder.
pub struct LtreIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    config: IndexConfig,
    lexical_fields: Vec<Field>,
    id: IdField,
    dense: Option<DenseField>,
    encoder: Option<QueryEncoder>,
}

impl LtreIndex {
    /// Opens the index at `dir` with the active query encoder ([`OpenOptions::default`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<LtreIndex> {
        LtreIndex::open_with(dir, &OpenOptions::default())
    }

    /// Opens the index at `dir`.
    pub fn open_with(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<LtreIndex> {
        let dir = dir.as_ref().to_path_buf();
        let config = IndexConfig::load(&dir)?;
        let mut index = Index::open_in_dir(&dir).map_err(|e| {
            Error::Invalid(format!(
                "{}: cannot open the Tantivy index: {e}",
                dir.display()
            ))
        })?;
        let dense = match &config.dense_field {
            Some(_) => Some(DenseField::register(&mut index)?),
            None => None,
        };
        let schema = index.schema();
        let names = options
            .lexical_fields
            .as_ref()
            .unwrap_or(&config.text_fields);
        let lexical_fields = names
            .iter()
            .map(|name| {
                schema.get_field(name).map_err(|_| {
                    Error::Invalid(format!(
                        "{}: no lexical field `{name}` (the schema has: {})",
                        dir.display(),
                        field_names(&index)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let id = IdField::new(&schema, &config.id_field)?;
        let encoder = match (&options.query_encoder, &dense) {
            (EncoderChoice::None, _) | (EncoderChoice::Active, None) => None,
            (EncoderChoice::Pinned(_), None) => {
                return Err(Error::Invalid(format!(
                    "{}: lexical-only index (no dense field): no query encoder to load; search it in bm25 mode",
                    dir.display()
                )))
            }
            (EncoderChoice::Pinned(id), Some(dense)) => {
                Some(pinned(&dir, id, dense.dim(), options.threads)?)
            }
            (EncoderChoice::Active, Some(_)) => Some(active(&dir, options.threads)?),
        };
        let reader = index.reader()?;
        Ok(LtreIndex {
            dir,
            index,
            reader,
            config,
            lexical_fields,
            id,
            dense,
            encoder,
        })
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Tantivy index (plugin registered: writers and readers may be created from it).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// `ltre.json`.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// The dense field, `None` for a lexical-only index.
    pub fn dense_field(&self) -> Option<&DenseField> {
        self.dense.as_ref()
    }

    /// The BM25 fields.
    pub fn lexical_fields(&self) -> &[Field] {
        &self.lexical_fields
    }

    /// The reader (reloaded on commits).
    pub fn reader(&self) -> &IndexReader {
        &self.reader
    }

    /// A searcher on the latest commit seen by the reader.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// The BM25 bag-of-words query of `text` over the lexical fields (see
    /// [`crate::lexical::bag_of_words`]).
    pub fn lexical_query(&self, text: &str) -> Result<Box<dyn Query>> {
        bag_of_words(&self.index, &self.lexical_fields, text)
    }

    /// The field holding each document's external id.
    pub fn id_field(&self) -> &IdField {
        &self.id
    }

    /// The external id of the document at `address`.
    pub fn doc_id(&self, searcher: &Searcher, address: DocAddress) -> Result<String> {
        self.id.get(searcher, address)
    }

    /// The first stored text of field `field` of the document at `address` (`None` when the
    /// document has none); an unknown field is an error naming it.
    pub fn stored_text(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        field: &str,
    ) -> Result<Option<String>> {
        let field = self.index.schema().get_field(field).map_err(|_| {
            Error::Invalid(format!(
                "{}: no field `{field}` (the schema has: {})",
                self.dir.display(),
                field_names(&self.index)
            ))
        })?;
        let doc: TantivyDocument = searcher.doc(address)?;
        Ok(doc
            .get_first(field)
            .and_then(|v| v.as_str().map(str::to_string)))
    }

    /// The stored `title` of a document, empty when the index or the document has none.
    pub fn title(&self, searcher: &Searcher, address: DocAddress) -> Result<String> {
        if self.index.schema().get_field("title").is_err() {
            return Ok(String::new());
        }
        Ok(self
            .stored_text(searcher, address, "title")?
            .unwrap_or_default())
    }

    /// The linear fusion weight chosen on held-out queries for the query encoder in use
    /// (recorded by a fine-tune as its `fusion_alpha` metric), if any: what a linear hybrid
    /// search should use unless told otherwise.
    pub fn fusion_alpha(&self) -> Option<f32> {
        let id = self.query_encoder_id()?;
        let record = crate::registry::EncoderStore::new(&self.dir)
            .record(&id)
            .ok()?;
        let alpha = *record.metrics.get(crate::finetune::FUSION_ALPHA_METRIC)?;
        (0.0..=1.0).contains(&alpha).then_some(alpha as f32)
    }

    /// The weight a linear hybrid search of this index should use: [`LtreIndex::fusion_alpha`],
    /// else equal weights ([`HybridConfig::default`](ltre_core::hybrid::HybridConfig)).
    pub fn linear_fusion_alpha(&self) -> f32 {
        self.fusion_alpha()
            .unwrap_or_else(|| ltre_core::hybrid::HybridConfig::default().alpha)
    }

    /// The id of the query encoder in use, `None` when none was loaded.
    pub fn query_encoder_id(&self) -> Option<String> {
        match self.encoder.as_ref()? {
            #[cfg(feature = "encoder")]
            QueryEncoder::Live(live) => Some(live.current_id()),
            QueryEncoder::Pinned { id, .. } => Some(id.clone()),
        }
    }

    /// Embeds `texts` as queries, one vector per text.
    pub fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encoder = self.encoder.as_ref().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: opened without a query encoder (EncoderChoice::None, or a lexical-only index); dense and hybrid search need one",
                self.dir.display()
            ))
        })?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(QUERY_BATCH) {
            let matrix = match encoder {
                #[cfg(feature = "encoder")]
                QueryEncoder::Live(live) => live.get()?.encode_queries(chunk)?,
                QueryEncoder::Pinned { embedder, .. } => embedder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .embed_queries(chunk)?,
            };
            out.extend(matrix.rows().into_iter().map(|r| r.to_vec()));
        }
        Ok(out)
    }
}

fn field_names(index: &Index) -> String {
    let schema = index.schema();
    let names: Vec<&str> = schema.fields().map(|(_, e)| e.name()).collect();
    names.join(", ")
}

fn pinned(dir: &Path, id: &str, dim: usize, threads: usize) -> Result<QueryEncoder> {
    let store = EncoderStore::new(dir);
    let encoder_dir = store.encoder_dir(id)?;
    if !encoder_dir.is_dir() {
        return Err(Error::Invalid(format!(
            "no encoder `{id}` in {}; `ltre-cli encoder list --index {}` shows them",
            dir.join(crate::layout::ENCODERS_DIR).display(),
            dir.display()
        )));
    }
    let embedder = load_embedder(
        &encoder_dir,
        EmbedderOptions {
            threads,
            batch_size: QUERY_BATCH,
        },
    )?;
    if embedder.dim() != dim {
        return Err(Error::Invalid(format!(
            "encoder `{id}` embeds in {} dimensions but the index stores {dim}-d vectors",
            embedder.dim()
        )));
    }
    Ok(QueryEncoder::Pinned {
        id: id.to_string(),
        embedder: Mutex::new(embedder),
    })
}

#[cfg(feature = "encoder")]
fn active(dir: &Path, threads: usize) -> Result<QueryEncoder> {
    let mut options = ltre_core::encoder::EncoderOptions {
        batch_size: QUERY_BATCH,
        ..Default::default()
    };
    if threads > 0 {
        options.threads = threads;
    }
    Ok(QueryEncoder::Live(crate::live::LiveEncoder::open(
        dir, options,
    )?))
}

#[cfg(not(feature = "encoder"))]
fn active(dir: &Path, threads: usize) -> Result<QueryEncoder> {
    let store = EncoderStore::new(dir);
    let id = store.active_id()?;
    let config = IndexConfig::load(dir)?;
    pinned(dir, &id, config.dim, threads)
}
