//! [`DenseQuery`]: the k documents whose vectors have the largest inner product with a query
//! vector, as a Tantivy [`Query`].
//!
//! The score of a matched document is the inner product (times the query boost). Each segment
//! contributes its own top k, so a `TopDocs` collector over the searcher yields the exact global
//! top k (with an exact scan; with an approximate segment index, up to its recall).
//!
//! # Filters
//!
//! - **Filter, then rank by the dense score** (usually what you want): [`DenseQuery::with_filter`].
//!   The top k is taken among the documents that match the filter, and the score is the inner
//!   product alone.
//! - **Inside a `BooleanQuery`**: `Must(term) + Must(dense)` intersects the dense top k with the
//!   term's matches (a post-filter: fewer than k hits when the filter is selective) and *sums*
//!   the scores, so BM25 leaks into the ranking. Wrap the lexical clause in
//!   `ConstScoreQuery::new(q, 0.0)` to rank by the dense score alone.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tantivy::collector::TopDocs;
//! use tantivy::query::TermQuery;
//! use tantivy::schema::{IndexRecordOption, Schema, STRING};
//! use tantivy::{Index, IndexWriter, TantivyDocument, Term};
//! use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions, DenseQuery};
//!
//! let mut builder = Schema::builder();
//! let lang = builder.add_text_field("lang", STRING);
//! add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(2));
//! let schema = builder.build();
//! let dense = DenseField::from_schema(&schema)?;
//! let index = Index::builder().schema(schema).register_plugin(dense.plugin()).create_in_ram()?;
//!
//! let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000)?;
//! for (l, v) in [("en", [1.0, 0.0]), ("fr", [0.9, 0.1]), ("en", [0.0, 1.0])] {
//!     let mut doc = TantivyDocument::new();
//!     doc.add_text(lang, l);
//!     dense.set_vector(&mut doc, &v)?;
//!     writer.add_document(doc)?;
//! }
//! writer.commit()?;
//! let searcher = index.reader()?.searcher();
//!
//! let english = TermQuery::new(Term::from_field_text(lang, "en"), IndexRecordOption::Basic);
//! let query = DenseQuery::new(&dense, vec![1.0, 0.0], 2)?.with_filter(Box::new(english));
//! let hits = searcher.search(&query, &TopDocs::with_limit(2).order_by_score())?;
//! assert_eq!(hits.len(), 2);
//! assert_eq!(hits[0].0, 1.0); // doc 0; the closer "fr" doc is filtered out
//! assert_eq!(hits[1].0, 0.0); // doc 2
//! # Ok(())
//! # }
//! ```
use std::sync::Arc;

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError, TERMINATED};

use crate::ann::AnnParams;
use crate::error::{Error, Result};
use crate::field::{validate_vector, DenseField};
use crate::scan::{dot, TopK};

/// How a [`DenseQuery`] searches a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Use the segment's approximate index when it has one (and no filter is set), else scan.
    Auto(AnnParams),
    /// Always scan every vector (exact).
    Exact,
}

/// Top-k inner-product search over the dense field (see the module docs).
pub struct DenseQuery {
    dense: DenseField,
    vector: Arc<[f32]>,
    k: usize,
    filter: Option<Box<dyn Query>>,
    mode: SearchMode,
}

impl Clone for DenseQuery {
    fn clone(&self) -> Self {
        DenseQuery {
            dense: self.dense.clone(),
            vector: self.vector.clone(),
            k: self.k,
            filter: self.filter.as_ref().map(|f| f.box_clone()),
            mode: self.mode,
        }
    }
}

impl std::fmt::Debug for DenseQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseQuery")
            .field("field", &self.dense.name())
            .field("dim", &self.vector.len())
            .field("k", &self.k)
            .field("filter", &self.filter)
            .field("mode", &self.mode)
            .finish()
    }
}

impl DenseQuery {
    /// The `k` nearest documents (by inner product) to `vector`. Refuses a vector of the wrong
    /// dimension or with NaN/infinite components.
    pub fn new(dense: &DenseField, vector: Vec<f32>, k: usize) -> Result<DenseQuery> {
        validate_vector(&vector, dense.dim())?;
        Ok(DenseQuery {
            dense: dense.clone(),
            vector: vector.into(),
            k,
            filter: None,
            mode: SearchMode::Auto(AnnParams::default()),
        })
    }

    /// Restricts the candidates to the documents matching `filter` before taking the top k; the
    /// filter's own scores are ignored. Filtered searches always scan exactly.
    pub fn with_filter(mut self, filter: Box<dyn Query>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Forces the exact scan even on segments with an approximate index.
    pub fn exact(mut self) -> Self {
        self.mode = SearchMode::Exact;
        self
    }

    /// Sets the approximate index's query-time parameters (nprobe, efSearch).
    pub fn with_ann_params(mut self, params: AnnParams) -> Self {
        self.mode = SearchMode::Auto(params);
        self
    }

    /// The query vector.
    pub fn vector(&self) -> &[f32] {
        &self.vector
    }

    /// The number of documents kept per segment.
    pub fn k(&self) -> usize {
        self.k
    }
}

pub(crate) fn to_tantivy(e: Error) -> TantivyError {
    match e {
        Error::Tantivy(e) => e,
        other => TantivyError::InternalError(other.to_string()),
    }
}

impl Query for DenseQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let filter = match &self.filter {
            Some(filter) => {
                let scoring = match enable_scoring.searcher() {
                    Some(searcher) => EnableScoring::disabled_from_searcher(searcher),
                    None => EnableScoring::disabled_from_schema(enable_scoring.schema()),
                };
                Some(filter.weight(scoring)?)
            }
            None => None,
        };
        Ok(Box::new(DenseWeight {
            dense: self.dense.clone(),
            vector: self.vector.clone(),
            k: self.k,
            filter,
            mode: self.mode,
        }))
    }
}

struct DenseWeight {
    dense: DenseField,
    vector: Arc<[f32]>,
    k: usize,
    filter: Option<Box<dyn Weight>>,
    mode: SearchMode,
}

impl DenseWeight {
    /// The segment's top k as `(score, doc)`, best first.
    fn segment_hits(&self, reader: &SegmentReader) -> tantivy::Result<Vec<(f32, DocId)>> {
        let vectors = self.dense.segment_vectors(reader)?;
        let query = &self.vector[..];
        let alive = reader.alive_bitset();
        let mut top = TopK::new(self.k);
        if let Some(filter) = &self.filter {
            let mut candidates = filter.scorer(reader, 1.0)?;
            let mut doc = candidates.doc();
            while doc != TERMINATED {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    if let Some(v) = vectors.vector(doc) {
                        top.push(dot(query, v), doc);
                    }
                }
                doc = candidates.advance();
            }
            return Ok(top.into_sorted_vec());
        }
        if let SearchMode::Auto(params) = &self.mode {
            if let Some(ann) = self.dense.ann_cache().get(reader).map_err(to_tantivy)? {
                // Deleted documents are still in the index: fetch enough to drop them.
                let fetch = self.k + reader.num_deleted_docs() as usize;
                let hits = ann.search(query, fetch, params).map_err(to_tantivy)?;
                return Ok(hits
                    .into_iter()
                    .filter(|(_, doc)| alive.is_none_or(|a| a.is_alive(*doc)))
                    .take(self.k)
                    .collect());
            }
        }
        let dim = vectors.dim();
        for (doc, row) in vectors.rows().chunks_exact(dim).enumerate() {
            let doc = doc as DocId;
            if vectors.has_vector(doc) && alive.is_none_or(|a| a.is_alive(doc)) {
                top.push(dot(query, row), doc);
            }
        }
        Ok(top.into_sorted_vec())
    }
}

impl Weight for DenseWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut hits: Vec<(DocId, Score)> = self
            .segment_hits(reader)?
            .into_iter()
            .map(|(score, doc)| (doc, score * boost))
            .collect();
        hits.sort_unstable_by_key(|(doc, _)| *doc);
        Ok(Box::new(DenseScorer { hits, pos: 0 }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document {doc} is not in the dense top {} of this segment",
                self.k
            )));
        }
        let mut explanation =
            Explanation::new("inner product with the query vector", scorer.score());
        explanation.add_context(format!(
            "dense field `{}`, top {} per segment",
            self.dense.name(),
            self.k
        ));
        Ok(explanation)
    }
}

/// Iterates a segment's dense hits in doc-id order.
struct DenseScorer {
    hits: Vec<(DocId, Score)>,
    pos: usize,
}

impl DocSet for DenseScorer {
    fn advance(&mut self) -> DocId {
        self.pos += 1;
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let rest = &self.hits[self.pos.min(self.hits.len())..];
        self.pos += rest.partition_point(|(doc, _)| *doc < target);
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.hits.get(self.pos).map_or(TERMINATED, |(doc, _)| *doc)
    }

    fn size_hint(&self) -> u32 {
        self.hits.len() as u32
    }
}

impl Scorer for DenseScorer {
    fn score(&mut self) -> Score {
        self.hits.get(self.pos).map_or(0.0, |(_, score)| *score)
    }
}
