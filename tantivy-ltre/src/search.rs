//! One call for BM25, dense or hybrid retrieval on an [`LtreIndex`]: [`SearchOptions`] and
//! [`LtreIndex::search`].
//!
//! Dense and hybrid modes embed the query with the index's query encoder and go through
//! [`HybridSearcher`]; [`FusionMethod`] picks reciprocal ranks, a normalised linear blend or a
//! cascade (the BM25 top `depth` re-ranked by the dense score).
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use tantivy_ltre::index::LtreIndex;
//! use tantivy_ltre::search::{FusionMethod, RetrievalMode, SearchOptions};
//! use tantivy_ltre::Normalization;
//!
//! let index = LtreIndex::open("scifact-index")?;
//! let options = SearchOptions {
//!     mode: RetrievalMode::Hybrid,
//!     fusion: FusionMethod::Linear { alpha: 0.3, normalization: Normalization::ZScore },
//!     k: 5,
//!     ..SearchOptions::default()
//! };
//! options.validate()?;
//! let hits = index.search("vitamin c and scurvy", &options)?;
//! # Ok(())
//! # }
//! ```
use tantivy::collector::TopDocs;
use tantivy::{DocAddress, Score, Searcher};

use crate::ann::AnnParams;
use crate::error::{Error, Result};
use crate::fusion::{Cascade, Fusion, HybridSearcher, LinearFusion, Normalization, Rrf};
use crate::index::LtreIndex;

/// What [`LtreIndex::search`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RetrievalMode {
    /// BM25 over the lexical fields.
    Bm25,
    /// Inner product with the query encoder's embedding.
    Dense,
    /// Both, fused by [`SearchOptions::fusion`].
    #[default]
    Hybrid,
}

/// How the hybrid mode fuses the lexical and dense lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FusionMethod {
    /// Reciprocal-rank fusion with rank constant `k` (60 in the literature).
    Rrf {
        /// The rank constant (finite, at least 0).
        k: f32,
    },
    /// `alpha * dense + (1 - alpha) * lexical` on normalised scores.
    Linear {
        /// Weight of the dense side, in [0, 1].
        alpha: f32,
        /// Score normalisation.
        normalization: Normalization,
    },
    /// The BM25 top `depth` re-ranked by the dense score.
    Cascade,
}

impl Default for FusionMethod {
    fn default() -> Self {
        FusionMethod::Rrf { k: 60.0 }
    }
}

/// Options of [`LtreIndex::search`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// BM25, dense or hybrid.
    pub mode: RetrievalMode,
    /// Fusion of the hybrid mode.
    pub fusion: FusionMethod,
    /// Candidates per side for fusion (the first-stage size of the cascade); at least 1.
    pub depth: usize,
    /// Results returned. 0 returns no hit (not an error).
    pub k: usize,
    /// Query-time parameters of segments with an approximate (Faiss) index.
    pub ann: AnnParams,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            mode: RetrievalMode::Hybrid,
            fusion: FusionMethod::default(),
            depth: 100,
            k: 10,
            ann: AnnParams::default(),
        }
    }
}

impl SearchOptions {
    /// Refuses values no search can use, naming the option.
    pub fn validate(&self) -> Result<()> {
        if self.depth == 0 {
            return Err(Error::Invalid(
                "depth must be at least 1 (candidates per side of the fusion)".into(),
            ));
        }
        match self.fusion {
            FusionMethod::Linear { alpha, .. } if !(0.0..=1.0).contains(&alpha) => {
                Err(Error::Invalid(format!(
                    "alpha {alpha} is outside [0, 1] (0: BM25 only, 1: dense only)"
                )))
            }
            FusionMethod::Rrf { k } if !k.is_finite() || k < 0.0 => Err(Error::Invalid(format!(
                "rrf k {k} must be a finite number >= 0 (60 is the usual value)"
            ))),
            _ => Ok(()),
        }
    }

    fn boxed_fusion(&self) -> Box<dyn Fusion> {
        match self.fusion {
            FusionMethod::Rrf { k } => Box::new(Rrf { k }),
            FusionMethod::Linear {
                alpha,
                normalization,
            } => Box::new(LinearFusion {
                alpha,
                normalization,
            }),
            FusionMethod::Cascade => Box::new(Cascade),
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The score of the mode (BM25, inner product or fused).
    pub score: Score,
    /// Where the document is in the searcher it was found with.
    pub address: DocAddress,
    /// The document's external id.
    pub id: String,
}

impl LtreIndex {
    /// The top `options.k` documents for `text`, on a fresh searcher (embeds the query for the
    /// dense and hybrid modes).
    pub fn search(&self, text: &str, options: &SearchOptions) -> Result<Vec<Hit>> {
        options.validate()?;
        let vector = match options.mode {
            RetrievalMode::Bm25 => None,
            _ => self.embed_queries(&[text])?.pop(),
        };
        self.search_with(&self.searcher(), text, vector.as_deref(), options)
    }

    /// The top `options.k` documents for `text` on `searcher`, with the query embedding
    /// `vector` already computed (required by the dense and hybrid modes; see
    /// [`LtreIndex::embed_queries`]). Hits' addresses refer to `searcher`.
    pub fn search_with(
        &self,
        searcher: &Searcher,
        text: &str,
        vector: Option<&[f32]>,
        options: &SearchOptions,
    ) -> Result<Vec<Hit>> {
        options.validate()?;
        if options.k == 0 {
            return Ok(Vec::new());
        }
        let hits: Vec<(Score, DocAddress)> = if options.mode == RetrievalMode::Bm25 {
            searcher.search(
                &*self.lexical_query(text)?,
                &TopDocs::with_limit(options.k).order_by_score(),
            )?
        } else {
            let dense = self.dense_field().ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: lexical-only index (built without a model); use the bm25 mode",
                    self.dir().display()
                ))
            })?;
            let vector = vector.ok_or_else(|| {
                Error::Invalid("dense and hybrid modes need the query's embedding".into())
            })?;
            let hybrid = HybridSearcher::new(searcher, dense)
                .with_depth(options.depth)
                .with_ann_params(options.ann);
            if options.mode == RetrievalMode::Dense {
                hybrid.dense(vector, None, options.k)?
            } else {
                let lexical = self.lexical_query(text)?;
                hybrid.search(&*lexical, vector, None, &*options.boxed_fusion(), options.k)?
            }
        };
        hits.into_iter()
            .map(|(score, address)| {
                Ok(Hit {
                    score,
                    address,
                    id: self.doc_id(searcher, address)?,
                })
            })
            .collect()
    }
}
