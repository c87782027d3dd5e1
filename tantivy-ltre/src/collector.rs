//! [`HybridCollector`]: hybrid lexical + dense search as one Tantivy [`Collector`].
//!
//! The **lexical leg** is the query given to `Searcher::search`: its scores (BM25 for a text
//! query) reach the collector through `SegmentCollector::collect`. The **dense leg** is a
//! [`DenseQuery`] held by the collector and run on each segment as the searcher visits it. Each
//! segment keeps its top `depth` of each leg; [`Collector::merge_fruits`] takes the global top
//! `depth` of each leg (global ranks, which reciprocal-rank fusion needs), fuses them with a
//! [`Fusion`] ([`Rrf`](crate::Rrf), [`LinearFusion`](crate::LinearFusion),
//! [`Cascade`](crate::Cascade)) and returns the top k as [`HybridHit`]s: the address, the fused
//! score and where the document stood in each leg.
//!
//! `depth` is `max(with_depth, k)` (100 by default) candidates per leg. With [`Cascade`]
//! (whose [`Fusion::dense_input`] is [`DenseInput::LexicalCandidates`]) there is no dense top
//! list: each segment scores its lexical top `depth` with their stored vectors.
//!
//! # Filters
//!
//! A filter must restrict both legs. [`HybridCollector::with_filter`] sets it on the dense leg,
//! and [`HybridCollector::filtered_lexical`] wraps the lexical query with the same filter
//! (`Must(lexical) + Must(ConstScore(filter, 0))`, so the filter adds nothing to BM25): search
//! with the wrapped query.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tantivy::collector::Count;
//! use tantivy::query::TermQuery;
//! use tantivy::schema::{IndexRecordOption, Schema, STRING, TEXT};
//! use tantivy::{Index, TantivyDocument, Term};
//! use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter};
//! use tantivy_ltre::{HybridCollector, Rrf};
//!
//! let mut builder = Schema::builder();
//! let body = builder.add_text_field("body", TEXT);
//! let lang = builder.add_text_field("lang", STRING);
//! add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(2));
//! let schema = builder.build();
//! let dense = DenseField::from_schema(&schema)?;
//! let index = Index::builder().schema(schema).register_plugin(dense.plugin()).create_in_ram()?;
//! let mut writer = DenseIndexWriter::new(index.writer_with_num_threads(1, 15_000_000)?, dense.clone());
//! for (text, l, vector) in [
//!     ("rust search", "en", [1.0, 0.0]),
//!     ("rust search engine", "fr", [1.0, 0.0]),
//!     ("pasta", "en", [0.6, 0.8]),
//! ] {
//!     let mut doc = TantivyDocument::new();
//!     doc.add_text(body, text);
//!     doc.add_text(lang, l);
//!     writer.add_document(doc, Some(&vector))?;
//! }
//! writer.commit()?;
//! let searcher = index.reader()?.searcher();
//!
//! let english = TermQuery::new(Term::from_field_text(lang, "en"), IndexRecordOption::Basic);
//! let rust = TermQuery::new(Term::from_field_text(body, "rust"), IndexRecordOption::WithFreqs);
//! let collector = HybridCollector::new(&dense, &[0.6, 0.8], Rrf::default(), 10)?
//!     .with_filter(Box::new(english));
//! let lexical = collector.filtered_lexical(&rust);
//! let (count, hits) = searcher.search(&*lexical, &(Count, collector))?;
//! assert_eq!(count, 1); // "rust" in English
//! assert_eq!(hits.len(), 2); // the French document is filtered out of both legs
//! let (lexical_rank, dense_rank) = (hits[0].lexical.map(|l| l.rank), hits[0].dense.map(|d| d.rank));
//! assert_eq!((lexical_rank, dense_rank), (Some(1), Some(2))); // "rust search": 1/61 + 1/62
//! assert_eq!(hits[1].lexical, None); // "pasta", dense only: 1/61
//! # Ok(())
//! # }
//! ```
//!
//! # Determinism and scores
//!
//! Equal scores rank by ascending [`DocAddress`] in every list, so results do not depend on the
//! order segments are visited. Run alone, the collector feeds its lexical heap through
//! `Weight::for_each_pruning` exactly like `TopDocs` ordered by score, so its lexical leg is
//! `TopDocs`'s. Inside a tuple, Tantivy drives the lexical query through `Weight::for_each`,
//! whose scores can differ from the pruning path's in the last bits for some boolean queries.
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{BooleanQuery, ConstScoreQuery, EnableScoring, Occur, Query, Weight};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::ann::AnnParams;
use crate::error::Result;
use crate::field::{DenseField, SegmentVectors};
use crate::fusion::{sort_and_truncate, DenseInput, Fusion};
use crate::query::{DenseQuery, DenseWeight, SegmentSearch};
use crate::scan::{dot, finite, TopK};

/// Candidates per leg unless [`HybridCollector::with_depth`] says otherwise.
pub const DEFAULT_DEPTH: usize = 100;

/// Where a hit stood in one leg of the hybrid search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegHit {
    /// 1-based rank in the leg's global top `depth`.
    pub rank: usize,
    /// The leg's score (BM25 for a text query, the inner product for the dense leg).
    pub score: Score,
}

/// One fused hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridHit {
    /// The document.
    pub address: DocAddress,
    /// Its fused score (the ranking key of the fruit).
    pub score: Score,
    /// Its place in the lexical top `depth`, `None` when it is not there.
    pub lexical: Option<LegHit>,
    /// Its place in the dense top `depth` (with [`Cascade`](crate::Cascade): among the scored
    /// lexical candidates), `None` when it is not there.
    pub dense: Option<LegHit>,
}

/// Wraps `lexical` so that it only matches documents of `filter` (whose score adds nothing).
pub fn filtered(lexical: &dyn Query, filter: Option<&dyn Query>) -> Box<dyn Query> {
    match filter {
        Some(filter) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, lexical.box_clone()),
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(filter.box_clone(), 0.0)),
            ),
        ])),
        None => lexical.box_clone(),
    }
}

/// Fuses the lexical query of a search with a dense query (see the module docs).
pub struct HybridCollector<F> {
    dense: DenseQuery,
    fusion: F,
    k: usize,
    depth: usize,
    /// The dense leg's weight, built by the first segment (a collector sees no searcher).
    weight: OnceLock<DenseWeight>,
}

impl<F: Fusion> HybridCollector<F> {
    /// The fused top `k` of the searched (lexical) query and the inner product with `vector`.
    /// Refuses a vector of the wrong dimension or with NaN/infinite components.
    pub fn new(dense: &DenseField, vector: &[f32], fusion: F, k: usize) -> Result<Self> {
        Ok(Self::from_query(
            DenseQuery::new(dense, vector.to_vec(), k)?,
            fusion,
            k,
        ))
    }

    /// Like [`HybridCollector::new`], with the dense leg given as a query (its filter and search
    /// mode are kept; its `k` is replaced by the collector's depth).
    pub fn from_query(dense: DenseQuery, fusion: F, k: usize) -> Self {
        let mut collector = HybridCollector {
            dense,
            fusion,
            k,
            depth: DEFAULT_DEPTH,
            weight: OnceLock::new(),
        };
        collector.dense.set_k(collector.depth());
        collector
    }

    /// Candidates kept per leg: the effective depth is `max(depth, k)`.
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self.dense.set_k(self.depth());
        self.weight = OnceLock::new();
        self
    }

    /// Restricts the dense leg to `filter`; search with [`HybridCollector::filtered_lexical`]
    /// to restrict the lexical leg the same way.
    pub fn with_filter(mut self, filter: Box<dyn Query>) -> Self {
        self.dense = self.dense.with_filter(filter);
        self.weight = OnceLock::new();
        self
    }

    /// Query-time parameters for segments with an approximate index.
    pub fn with_ann_params(mut self, params: AnnParams) -> Self {
        self.dense = self.dense.with_ann_params(params);
        self.weight = OnceLock::new();
        self
    }

    /// Scans every segment exactly, even those with an approximate index.
    pub fn exact(mut self) -> Self {
        self.dense = self.dense.exact();
        self.weight = OnceLock::new();
        self
    }

    /// `lexical` restricted to this collector's filter: the query to search with.
    pub fn filtered_lexical(&self, lexical: &dyn Query) -> Box<dyn Query> {
        filtered(lexical, self.dense.filter())
    }

    /// The number of fused hits returned.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Candidates kept per leg, `max(depth, k)`.
    pub fn depth(&self) -> usize {
        self.depth.max(self.k)
    }

    /// The dense leg.
    pub fn dense_query(&self) -> &DenseQuery {
        &self.dense
    }

    fn dense_weight(&self, reader: &SegmentReader) -> tantivy::Result<&DenseWeight> {
        if let Some(weight) = self.weight.get() {
            return Ok(weight);
        }
        // The filter's scores are ignored, so the schema is all the weight needs.
        let weight = self
            .dense
            .dense_weight(EnableScoring::disabled_from_schema(reader.schema()))?;
        Ok(self.weight.get_or_init(|| weight))
    }
}

impl<F: Fusion> Collector for HybridCollector<F> {
    type Fruit = Vec<HybridHit>;
    type Child = HybridSegmentCollector;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<HybridSegmentCollector> {
        let depth = self.depth();
        let dense = if depth == 0 {
            DenseLeg::None
        } else {
            match self.fusion.dense_input() {
                DenseInput::TopN => DenseLeg::TopN(self.dense_weight(reader)?.prepare(reader)?),
                DenseInput::LexicalCandidates => DenseLeg::Candidates {
                    vectors: self.dense.field().segment_vectors(reader)?,
                    query: self.dense.vector().into(),
                },
            }
        };
        Ok(HybridSegmentCollector {
            segment_ord,
            lexical: TopK::new(depth),
            dense,
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    /// Drives the lexical query like `TopDocs` ordered by score: through `for_each_pruning`,
    /// so block-max WAND skips what cannot enter the lexical top `depth`.
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<HybridSegmentFruit> {
        let mut child = self.for_segment(segment_ord, reader)?;
        if self.depth() > 0 {
            let alive = reader.alive_bitset();
            let top = &mut child.lexical;
            weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    top.push(finite(score), doc);
                }
                top.threshold()
            })?;
        }
        Ok(child.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<HybridSegmentFruit>) -> tantivy::Result<Vec<HybridHit>> {
        let depth = self.depth();
        let lexical = merge(fruits.iter().map(|f| (f.segment_ord, &f.lexical)), depth);
        let dense = match self.fusion.dense_input() {
            DenseInput::TopN => merge(fruits.iter().map(|f| (f.segment_ord, &f.dense)), depth),
            DenseInput::LexicalCandidates => {
                // Each segment scored its own lexical top depth; keep the global ones'.
                let mut candidates: Vec<DocAddress> = lexical.iter().map(|(_, a)| *a).collect();
                candidates.sort_unstable();
                let scored = fruits
                    .iter()
                    .flat_map(|f| {
                        f.dense
                            .iter()
                            .map(|(s, d)| (*s, address(f.segment_ord, *d)))
                    })
                    .filter(|(_, a)| candidates.binary_search(a).is_ok())
                    .collect();
                sort_and_truncate(scored, depth)
            }
        };
        let fused = self.fusion.fuse(&lexical, &dense, self.k);
        let (lexical, dense) = (ranks(&lexical), ranks(&dense));
        Ok(fused
            .into_iter()
            .map(|(score, address)| HybridHit {
                address,
                score,
                lexical: lexical.get(&address).copied(),
                dense: dense.get(&address).copied(),
            })
            .collect())
    }
}

fn address(segment_ord: u32, doc: DocId) -> DocAddress {
    DocAddress::new(segment_ord, doc)
}

/// The global top `depth` of per-segment lists: score descending, then address ascending.
fn merge<'a>(
    lists: impl Iterator<Item = (u32, &'a Vec<(Score, DocId)>)>,
    depth: usize,
) -> Vec<(Score, DocAddress)> {
    let all = lists
        .flat_map(|(ord, list)| list.iter().map(move |(s, d)| (*s, address(ord, *d))))
        .collect();
    sort_and_truncate(all, depth)
}

fn ranks(list: &[(Score, DocAddress)]) -> HashMap<DocAddress, LegHit> {
    list.iter()
        .enumerate()
        .map(|(i, (score, doc))| {
            let hit = LegHit {
                rank: i + 1,
                score: *score,
            };
            (*doc, hit)
        })
        .collect()
}

/// The dense work of one segment, prepared in `for_segment` and done in `harvest`.
enum DenseLeg {
    /// Depth 0: nothing to do.
    None,
    /// The segment's dense top `depth`.
    TopN(SegmentSearch),
    /// The dense scores of the segment's lexical top `depth` (cascade).
    Candidates {
        vectors: SegmentVectors,
        query: Arc<[f32]>,
    },
}

/// The [`SegmentCollector`] of a [`HybridCollector`].
pub struct HybridSegmentCollector {
    segment_ord: u32,
    lexical: TopK,
    dense: DenseLeg,
}

/// One segment's top `depth` of each leg, best first (the segment fruit of a
/// [`HybridCollector`]).
pub struct HybridSegmentFruit {
    segment_ord: u32,
    lexical: Vec<(Score, DocId)>,
    dense: Vec<(Score, DocId)>,
}

impl SegmentCollector for HybridSegmentCollector {
    type Fruit = HybridSegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.lexical.push(finite(score), doc);
    }

    fn harvest(self) -> HybridSegmentFruit {
        let lexical = self.lexical.into_sorted_vec();
        let dense = match self.dense {
            DenseLeg::None => Vec::new(),
            DenseLeg::TopN(search) => search.run(),
            DenseLeg::Candidates { vectors, query } => lexical
                .iter()
                .filter_map(|(_, doc)| Some((finite(dot(&query, vectors.vector(*doc)?)), *doc)))
                .collect(),
        };
        HybridSegmentFruit {
            segment_ord: self.segment_ord,
            lexical,
            dense,
        }
    }
}
