//! `ltre-cli search`: one query against an index, BM25, dense or hybrid, through
//! [`LtreIndex::search`]; the retrieval flags shared with `ltre-cli eval`.
use std::path::PathBuf;

use anyhow::Result;
use tantivy_ltre::{
    AnnParams, EncoderChoice, FusionMethod, LtreIndex, Normalization, OpenOptions, RetrievalMode,
    SearchOptions,
};

/// Hybrid fusion method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FusionKind {
    /// Reciprocal-rank fusion (constant --rrf-k).
    Rrf,
    /// Normalised linear fusion (--alpha, --normalization).
    Linear,
    /// BM25 top --depth re-ranked by the dense score.
    Cascade,
}

/// Retrieval options shared by `search` and `eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct RetrievalArgs {
    /// Index directory (built by `ltre-cli index`).
    #[arg(long)]
    pub index: PathBuf,
    /// Retrieval mode.
    #[arg(long, value_enum, default_value_t = RetrievalMode::Hybrid)]
    pub mode: RetrievalMode,
    /// Fusion of the hybrid mode.
    #[arg(long, value_enum, default_value_t = FusionKind::Rrf)]
    pub fusion: FusionKind,
    /// RRF rank constant.
    #[arg(long, default_value_t = 60.0)]
    pub rrf_k: f32,
    /// Weight of the dense side in the linear fusion (default: the one chosen on held-out
    /// queries for the query encoder in use by `ltre-cli train`, else 0.5).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Normalisation of the linear fusion.
    #[arg(long, value_enum, default_value_t = Normalization::MinMax)]
    pub normalization: Normalization,
    /// Candidates per side for fusion (first-stage size of the cascade).
    #[arg(long, default_value_t = 100)]
    pub depth: usize,
    /// Lexical fields BM25 searches (default: the index's, from ltre.json), e.g. `title,text`.
    #[arg(long, value_delimiter = ',')]
    pub fields: Option<Vec<String>>,
    /// Query encoder id under INDEX/encoders (default: the active one, followed live: an
    /// `ltre-cli encoder activate` or `rollback` takes effect without reopening).
    #[arg(long)]
    pub encoder: Option<String>,
    /// IVF lists probed on segments with a Faiss index.
    #[arg(long)]
    pub nprobe: Option<usize>,
    /// HNSW efSearch on segments with a Faiss index.
    #[arg(long)]
    pub ef_search: Option<usize>,
    /// Candidates fetched per segment from a Faiss index and re-scored exactly (default: the
    /// depth); raise it for quantised indexes (PQ, SQ).
    #[arg(long)]
    pub rerank: Option<usize>,
    /// Encoder threads (0: ONNX Runtime default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    retrieval: RetrievalArgs,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The query text.
    query: String,
}

impl RetrievalArgs {
    /// Opens the index with the query encoder the mode needs.
    pub fn open(&self) -> Result<LtreIndex> {
        let query_encoder = match (self.mode, &self.encoder) {
            (RetrievalMode::Bm25, _) => EncoderChoice::None,
            (_, Some(id)) => EncoderChoice::Pinned(id.clone()),
            (_, None) => EncoderChoice::Active,
        };
        let options = OpenOptions {
            query_encoder,
            lexical_fields: self.fields.clone(),
            threads: self.threads,
        };
        let index = LtreIndex::open_with(&self.index, &options)?;
        if self.mode != RetrievalMode::Bm25 && index.dense_field().is_none() {
            anyhow::bail!(
                "{}: lexical-only index (built without --model); use --mode bm25",
                self.index.display()
            );
        }
        Ok(index)
    }

    /// The library's search options for these flags, returning `k` documents.
    pub fn search_options(&self, index: &LtreIndex, k: usize) -> Result<SearchOptions> {
        let options = SearchOptions {
            mode: self.mode,
            fusion: match self.fusion {
                FusionKind::Rrf => FusionMethod::Rrf { k: self.rrf_k },
                FusionKind::Linear => FusionMethod::Linear {
                    alpha: self.alpha.unwrap_or_else(|| index.linear_fusion_alpha()),
                    normalization: self.normalization,
                },
                FusionKind::Cascade => FusionMethod::Cascade,
            },
            depth: self.depth,
            k,
            ann: AnnParams {
                nprobe: self.nprobe,
                ef_search: self.ef_search,
                rerank: self.rerank,
            },
        };
        options.validate()?;
        Ok(options)
    }
}

/// Runs `ltre-cli search`.
pub fn run(args: Args) -> Result<()> {
    let index = args.retrieval.open()?;
    let options = args.retrieval.search_options(&index, args.k)?;
    let searcher = index.searcher();
    let vector = match options.mode {
        RetrievalMode::Bm25 => None,
        _ => index.embed_queries(&[args.query.as_str()])?.pop(),
    };
    let hits = index.search_with(&searcher, &args.query, vector.as_deref(), &options)?;
    let mut rows = Vec::with_capacity(hits.len());
    for (rank, hit) in hits.into_iter().enumerate() {
        let title = index.title(&searcher, hit.address)?;
        rows.push((rank + 1, hit.score, hit.id, title));
    }
    if args.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(rank, score, id, title)| serde_json::json!({"rank": rank, "score": score, "id": id, "title": title}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{:>4}  {:>10}  {:<12}  title", "rank", "score", "id");
        for (rank, score, id, title) in rows {
            let title: String = title.chars().take(80).collect();
            println!("{rank:>4}  {score:>10.4}  {id:<12}  {title}");
        }
    }
    Ok(())
}
