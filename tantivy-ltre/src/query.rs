//! [`DenseQuery`]: the k documents whose vectors have the largest inner product with a query
//! vector, as a Tantivy [`Query`].
//!
//! The score of a matched document is the inner product (times the query boost). Each segment
//! contributes its own top k, so a `TopDocs` collector over the searcher yields the exact global
//! top k (with an exact scan; with an approximate segment index, up to its recall).
//!
//! # Cost
//!
//! A segment's work is one pass of the blocked kernel ([`crate::scan::top_k_rows`]) over its
//! rows, read in place from the segment file, into a k-bounded heap. It is done lazily:
//!
//! - `Weight::scorer` opens the segment's vectors (and the filter's scorer) but scores nothing;
//!   the scan runs when the scorer is first read (`doc`, `advance`, `seek`, `score`), so a
//!   scorer built and dropped costs no scan.
//! - `Weight::for_each_pruning` (what `TopDocs` ordered by score calls) and `Weight::for_each`
//!   scan directly, with no scorer in between.
//! - `Weight::count` scores nothing: `min(k, alive documents with a vector [matching the
//!   filter])`, from the presence bitmap (or by walking the filter).
//! - A segment with an approximate index (and no filter) is searched when the scorer is built:
//!   that search is cheap next to a scan, and fails there on bad parameters, as an error rather
//!   than a scorer that cannot report one. Its `count` is the number of hits it returned. Its
//!   candidates ([`AnnParams::rerank`], default k) are re-scored exactly from the stored rows,
//!   so every hit carries its true inner product, whatever the index's quantisation.
//! - `Weight::explain` scores the one document, then counts the candidates ranked before it,
//!   stopping once k are found: a document far from the top k is refused early, but confirming
//!   one inside it costs a full pass of the kernel (no heap).
//!
//! Scores are always finite: an overflowing inner product saturates ([`crate::scan::finite`]).
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
use std::cell::{Cell, OnceCell};
use std::sync::Arc;

use tantivy::fastfield::AliveBitSet;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError, TERMINATED};

use crate::ann::{AnnParams, AnnSegment};
use crate::error::{Error, Result};
use crate::field::{validate_vector, DenseField, SegmentVectors};
use crate::scan::{dot, finite, for_each_block, top_k_rows, TopK};

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

    /// The filter, if any.
    pub fn filter(&self) -> Option<&dyn Query> {
        self.filter.as_deref()
    }

    /// The dense field searched.
    pub fn field(&self) -> &DenseField {
        &self.dense
    }

    pub(crate) fn set_k(&mut self, k: usize) {
        self.k = k;
    }

    /// The concrete weight (the hybrid collector runs its segment search directly).
    pub(crate) fn dense_weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<DenseWeight> {
        let filter = match &self.filter {
            Some(filter) => {
                // The filter's scores are ignored: never compute them.
                let scoring = match scoring.searcher() {
                    Some(searcher) => EnableScoring::disabled_from_searcher(searcher),
                    None => EnableScoring::disabled_from_schema(scoring.schema()),
                };
                Some(filter.weight(scoring)?)
            }
            None => None,
        };
        Ok(DenseWeight {
            dense: self.dense.clone(),
            vector: self.vector.clone(),
            k: self.k,
            filter,
            mode: self.mode,
        })
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
        Ok(Box::new(self.dense_weight(enable_scoring)?))
    }
}

/// The [`Weight`] of a [`DenseQuery`].
pub(crate) struct DenseWeight {
    dense: DenseField,
    vector: Arc<[f32]>,
    k: usize,
    filter: Option<Box<dyn Weight>>,
    mode: SearchMode,
}

impl DenseWeight {
    /// Opens what the search of a segment needs (vectors, filter scorer, approximate index);
    /// scores nothing.
    pub(crate) fn prepare(&self, reader: &SegmentReader) -> tantivy::Result<SegmentSearch> {
        let vectors = self.dense.segment_vectors(reader)?;
        let source = match (&self.filter, self.mode) {
            (Some(filter), _) => Source::Filter(filter.scorer(reader, 1.0)?),
            (None, SearchMode::Auto(params)) => {
                match self.dense.ann_cache().get(reader).map_err(to_tantivy)? {
                    // Cheap next to a scan, and where bad parameters fail: done now, so
                    // that the error reaches the caller instead of a scorer that cannot fail.
                    Some(ann) => Source::Hits(self.ann_hits(&ann, &params, reader, &vectors)?),
                    None => Source::Scan,
                }
            }
            (None, SearchMode::Exact) => Source::Scan,
        };
        Ok(SegmentSearch {
            vector: self.vector.clone(),
            k: self.k,
            vectors,
            alive: reader.alive_bitset().cloned(),
            source,
        })
    }

    /// The top k of the segment's approximate-index candidates, re-scored exactly from the
    /// stored vectors, best first: scores are true inner products (so they merge with exactly
    /// scanned segments), and [`AnnParams::rerank`] candidates can be fetched for a quantised
    /// index whose own order is too coarse.
    fn ann_hits(
        &self,
        ann: &AnnSegment,
        params: &AnnParams,
        reader: &SegmentReader,
        vectors: &SegmentVectors,
    ) -> tantivy::Result<Vec<(Score, DocId)>> {
        // Deleted documents are still in the index: fetch enough to drop them.
        let fetch = params
            .candidates(self.k)
            .saturating_add(reader.num_deleted_docs() as usize);
        let hits = ann
            .search(&self.vector, fetch, params)
            .map_err(to_tantivy)?;
        let alive = reader.alive_bitset();
        let mut top = TopK::new(self.k);
        for (_, doc) in hits {
            if !alive.is_none_or(|a| a.is_alive(doc)) {
                continue;
            }
            if let Some(row) = vectors.vector(doc) {
                top.push(finite(dot(&self.vector, row)), doc);
            }
        }
        Ok(top.into_sorted_vec())
    }

    /// The segment's hits in doc-id order (for the callbacks of `for_each*`).
    fn hits_by_doc(&self, reader: &SegmentReader) -> tantivy::Result<Vec<(Score, DocId)>> {
        let mut hits = self.prepare(reader)?.run();
        hits.sort_unstable_by_key(|(_, doc)| *doc);
        Ok(hits)
    }
}

impl Weight for DenseWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let search = self.prepare(reader)?;
        let hint = search.upper_bound();
        Ok(Box::new(DenseScorer {
            pending: Cell::new(Some(search)),
            hits: OnceCell::new(),
            boost,
            pos: 0,
            hint,
        }))
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        Ok(self.prepare(reader)?.count())
    }

    fn for_each(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score),
    ) -> tantivy::Result<()> {
        for (score, doc) in self.hits_by_doc(reader)? {
            callback(doc, score);
        }
        Ok(())
    }

    fn for_each_pruning(
        &self,
        mut threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        for (score, doc) in self.hits_by_doc(reader)? {
            if score > threshold {
                threshold = callback(doc, score);
            }
        }
        Ok(())
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let not_a_hit = |why: &str| {
            TantivyError::InvalidArgument(format!(
                "document {doc} is not in the dense top {} of this segment: {why}",
                self.k
            ))
        };
        if reader.alive_bitset().is_some_and(|a| a.is_deleted(doc)) {
            return Err(not_a_hit("it is deleted"));
        }
        if let Some(filter) = &self.filter {
            if filter.scorer(reader, 1.0)?.seek(doc) != doc {
                return Err(not_a_hit("it does not match the filter"));
            }
        }
        let search = self.prepare(reader)?;
        let score = match search.vectors.vector(doc) {
            Some(row) => finite(dot(&self.vector, row)),
            None => return Err(not_a_hit("it has no vector")),
        };
        let how = match search.rank_check(score, doc) {
            Rank::Within(ahead) => format!("{ahead} candidates rank before it"),
            Rank::Approximate => "returned by the segment's approximate index".to_string(),
            Rank::Outside => return Err(not_a_hit("k candidates rank before it")),
        };
        let mut explanation = Explanation::new("inner product with the query vector", score);
        explanation.add_context(format!(
            "dense field `{}`, top {} per segment: {how}",
            self.dense.name(),
            self.k
        ));
        Ok(explanation)
    }
}

/// Where a segment search takes its candidates from.
enum Source {
    /// Every row (exact).
    Scan,
    /// The documents of the filter (exact).
    Filter(Box<dyn Scorer>),
    /// Already found, by the segment's approximate index.
    Hits(Vec<(Score, DocId)>),
}

/// Where a document stands in its segment's dense ranking.
enum Rank {
    /// In the top k, after this many candidates.
    Within(usize),
    /// In the approximate top k.
    Approximate,
    Outside,
}

/// One segment's prepared search: everything is open, nothing is scored yet.
pub(crate) struct SegmentSearch {
    vector: Arc<[f32]>,
    k: usize,
    vectors: SegmentVectors,
    alive: Option<AliveBitSet>,
    source: Source,
}

impl SegmentSearch {
    /// Alive and with a vector.
    #[inline]
    fn candidate(&self, doc: DocId) -> bool {
        self.vectors.has_vector(doc) && self.alive.as_ref().is_none_or(|a| a.is_alive(doc))
    }

    /// At least as many hits as [`SegmentSearch::run`] returns, without scoring.
    fn upper_bound(&self) -> u32 {
        let bound = self.k.min(self.vectors.num_present() as usize);
        match &self.source {
            Source::Filter(scorer) => bound.min(scorer.size_hint() as usize) as u32,
            Source::Hits(hits) => hits.len() as u32,
            Source::Scan => bound as u32,
        }
    }

    /// The number of hits [`SegmentSearch::run`] returns; scores nothing unless the segment is
    /// searched through its approximate index (then it was searched by `prepare`).
    pub(crate) fn count(self) -> u32 {
        let k = self.k.min(u32::MAX as usize) as u32;
        match self.source {
            Source::Scan => match &self.alive {
                None => self.vectors.num_present().min(k),
                Some(_) => {
                    let mut n = 0u32;
                    let mut doc = 0;
                    while doc < self.vectors.max_doc() && n < k {
                        n += u32::from(self.candidate(doc));
                        doc += 1;
                    }
                    n
                }
            },
            Source::Filter(mut scorer) => {
                let mut n = 0u32;
                let mut doc = scorer.doc();
                while doc != TERMINATED && n < k {
                    n += u32::from(
                        self.vectors.has_vector(doc)
                            && self.alive.as_ref().is_none_or(|a| a.is_alive(doc)),
                    );
                    doc = scorer.advance();
                }
                n
            }
            Source::Hits(hits) => hits.len() as u32,
        }
    }

    /// The exact top k of the rows.
    fn scan(&self) -> Vec<(Score, DocId)> {
        let (vectors, alive) = (&self.vectors, self.alive.as_ref());
        top_k_rows(&self.vector, vectors.rows(), vectors.dim(), self.k, |doc| {
            vectors.has_vector(doc) && alive.is_none_or(|a| a.is_alive(doc))
        })
    }

    /// The segment's top k as `(score, doc)`, best first; scores are [`finite`].
    pub(crate) fn run(self) -> Vec<(Score, DocId)> {
        match self.source {
            Source::Scan => self.scan(),
            Source::Filter(mut candidates) => {
                let mut top = TopK::new(self.k);
                let mut doc = candidates.doc();
                while doc != TERMINATED {
                    if self.alive.as_ref().is_none_or(|a| a.is_alive(doc)) {
                        if let Some(v) = self.vectors.vector(doc) {
                            top.push(finite(dot(&self.vector, v)), doc);
                        }
                    }
                    doc = candidates.advance();
                }
                top.into_sorted_vec()
            }
            Source::Hits(hits) => hits,
        }
    }

    /// Whether the candidate `doc` with `score` is in the top k, counting the candidates that
    /// rank before it (higher score, or equal score and lower doc id) up to k.
    fn rank_check(self, score: Score, doc: DocId) -> Rank {
        let before = |s: Score, d: DocId| s > score || (s == score && d < doc);
        let mut ahead = 0usize;
        match self.source {
            Source::Scan => {
                let vectors = &self.vectors;
                for_each_block(
                    &self.vector,
                    vectors.rows(),
                    vectors.dim(),
                    |start, scores| {
                        for (i, s) in scores.iter().enumerate() {
                            let d = start + i as DocId;
                            if before(*s, d) && self.candidate(d) {
                                ahead += 1;
                            }
                        }
                        ahead < self.k
                    },
                );
            }
            Source::Filter(mut candidates) => {
                let mut d = candidates.doc();
                while d != TERMINATED && ahead < self.k {
                    if self.alive.as_ref().is_none_or(|a| a.is_alive(d)) {
                        if let Some(v) = self.vectors.vector(d) {
                            ahead += usize::from(before(finite(dot(&self.vector, v)), d));
                        }
                    }
                    d = candidates.advance();
                }
            }
            Source::Hits(hits) => {
                return if hits.iter().any(|(_, d)| *d == doc) {
                    Rank::Approximate
                } else {
                    Rank::Outside
                };
            }
        }
        if ahead < self.k {
            Rank::Within(ahead)
        } else {
            Rank::Outside
        }
    }
}

/// Iterates a segment's dense hits in doc-id order; the segment is scanned on first use.
struct DenseScorer {
    /// The search to run on first use (taken then).
    pending: Cell<Option<SegmentSearch>>,
    /// The hits, `(doc, score * boost)` by doc id, once the search ran.
    hits: OnceCell<Vec<(DocId, Score)>>,
    boost: Score,
    pos: usize,
    /// `size_hint` before the scan: an upper bound on the hits.
    hint: u32,
}

impl DenseScorer {
    fn hits(&self) -> &[(DocId, Score)] {
        self.hits.get_or_init(|| {
            let Some(search) = self.pending.take() else {
                return Vec::new();
            };
            let mut hits: Vec<(DocId, Score)> = search
                .run()
                .into_iter()
                .map(|(score, doc)| (doc, finite(score * self.boost)))
                .collect();
            hits.sort_unstable_by_key(|(doc, _)| *doc);
            hits
        })
    }
}

impl DocSet for DenseScorer {
    fn advance(&mut self) -> DocId {
        let len = self.hits().len();
        self.pos = (self.pos + 1).min(len);
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let hits = self.hits();
        let rest = &hits[self.pos.min(hits.len())..];
        self.pos += rest.partition_point(|(doc, _)| *doc < target);
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.hits()
            .get(self.pos)
            .map_or(TERMINATED, |(doc, _)| *doc)
    }

    fn size_hint(&self) -> u32 {
        self.hits.get().map_or(self.hint, |hits| hits.len() as u32)
    }
}

impl Scorer for DenseScorer {
    fn score(&mut self) -> Score {
        self.hits().get(self.pos).map_or(0.0, |(_, score)| *score)
    }
}
