//! `ltre-cli search`: one query against an index, BM25, dense or hybrid; and the [`Retriever`]
//! shared with `ltre-cli eval`.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ltre_core::encoder::EncoderOptions;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::tokenizer::TokenStream;
use tantivy::{DocAddress, Index, IndexReader, Score, Searcher, TantivyDocument, Term};
use tantivy_ltre::encoders::{EncoderStore, IndexConfig};
use tantivy_ltre::fusion::Fusion;
use tantivy_ltre::live::LiveEncoder;
use tantivy_ltre::{
    load_embedder, AnnParams, Cascade, DenseField, EmbedderOptions, HybridSearcher, LinearFusion,
    Normalization, Rrf, TextEmbedder,
};

/// Retrieval mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// BM25 over the lexical fields.
    Bm25,
    /// Inner product with the active query encoder's embedding.
    Dense,
    /// Both, fused (see --fusion).
    Hybrid,
}

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

/// Score normalisation of the linear fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NormKind {
    /// Min-max to [0, 1].
    Minmax,
    /// Z-score.
    Zscore,
}

/// Retrieval options shared by `search` and `eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct RetrievalArgs {
    /// Index directory (built by `ltre-cli index`).
    #[arg(long)]
    pub index: PathBuf,
    /// Retrieval mode.
    #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
    pub mode: Mode,
    /// Fusion of the hybrid mode.
    #[arg(long, value_enum, default_value_t = FusionKind::Rrf)]
    pub fusion: FusionKind,
    /// RRF rank constant.
    #[arg(long, default_value_t = 60.0)]
    pub rrf_k: f32,
    /// Weight of the dense side in the linear fusion.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Normalisation of the linear fusion.
    #[arg(long, value_enum, default_value_t = NormKind::Minmax)]
    pub normalization: NormKind,
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

/// An opened index with what each mode needs.
pub struct Retriever {
    args: RetrievalArgs,
    index: Index,
    reader: IndexReader,
    config: IndexConfig,
    lexical_fields: Vec<Field>,
    dense: Option<DenseField>,
    embedder: Option<QueryEncoder>,
}

/// The query encoder of a [`Retriever`].
enum QueryEncoder {
    /// The active encoder, reloaded when `encoders/ACTIVE` changes.
    Live(LiveEncoder),
    /// The encoder named by `--encoder`.
    Pinned(Box<dyn TextEmbedder>),
}

impl Retriever {
    /// Opens the index of `args` and, for dense and hybrid modes, the query encoder.
    pub fn open(args: &RetrievalArgs) -> Result<Retriever> {
        let config = IndexConfig::load(&args.index)?;
        let mut index = Index::open_in_dir(&args.index)
            .with_context(|| format!("opening {}", args.index.display()))?;
        let dense = match &config.dense_field {
            Some(_) => Some(DenseField::register(&mut index)?),
            None => None,
        };
        let schema = index.schema();
        let names = args.fields.as_ref().unwrap_or(&config.text_fields);
        let lexical_fields = names
            .iter()
            .map(|f| {
                schema
                    .get_field(f)
                    .with_context(|| format!("{}: no lexical field `{f}`", args.index.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let embedder = if args.mode == Mode::Bm25 {
            None
        } else {
            if dense.is_none() {
                bail!(
                    "{}: lexical-only index (built without --model); use --mode bm25",
                    args.index.display()
                );
            }
            Some(match &args.encoder {
                Some(id) => QueryEncoder::Pinned(load_embedder(
                    &EncoderStore::new(&args.index).encoder_dir(id)?,
                    EmbedderOptions {
                        threads: args.threads,
                        batch_size: 64,
                    },
                )?),
                None => {
                    let mut options = EncoderOptions {
                        batch_size: 64,
                        ..Default::default()
                    };
                    if args.threads > 0 {
                        options.threads = args.threads;
                    }
                    QueryEncoder::Live(LiveEncoder::open(&args.index, options)?)
                }
            })
        };
        let reader = index.reader()?;
        Ok(Retriever {
            args: args.clone(),
            index,
            reader,
            config,
            lexical_fields,
            dense,
            embedder,
        })
    }

    /// The searcher of the current commit.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// The BM25 bag-of-words query: one SHOULD term clause per query token and lexical field,
    /// tokenised like the field (no query syntax, so any text is a valid query).
    pub fn lexical_query(&self, text: &str) -> Result<Box<dyn Query>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for field in &self.lexical_fields {
            let mut tokenizer = self.index.tokenizer_for_field(*field)?;
            let mut stream = tokenizer.token_stream(text);
            while stream.advance() {
                let term = Term::from_field_text(*field, &stream.token().text);
                clauses.push((
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                ));
            }
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// Embeds queries with the query encoder.
    pub fn embed_queries(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let embedder = self
            .embedder
            .as_mut()
            .context("no query encoder loaded (bm25 mode)")?;
        let matrix = match embedder {
            QueryEncoder::Live(live) => live.get()?.encode_queries(texts)?,
            QueryEncoder::Pinned(embedder) => embedder.embed_queries(texts)?,
        };
        Ok(matrix.rows().into_iter().map(|r| r.to_vec()).collect())
    }

    fn fusion(&self) -> Box<dyn Fusion> {
        match self.args.fusion {
            FusionKind::Rrf => Box::new(Rrf { k: self.args.rrf_k }),
            FusionKind::Linear => Box::new(LinearFusion {
                alpha: self.args.alpha,
                normalization: match self.args.normalization {
                    NormKind::Minmax => Normalization::MinMax,
                    NormKind::Zscore => Normalization::ZScore,
                },
            }),
            FusionKind::Cascade => Box::new(Cascade),
        }
    }

    /// The top `k` for a query whose embedding (dense and hybrid modes) is `vector`.
    pub fn retrieve(
        &self,
        searcher: &Searcher,
        text: &str,
        vector: Option<&[f32]>,
        k: usize,
    ) -> Result<Vec<(Score, DocAddress)>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let ann = AnnParams {
            nprobe: self.args.nprobe,
            ef_search: self.args.ef_search,
        };
        match (self.args.mode, &self.dense, vector) {
            (Mode::Bm25, _, _) => Ok(searcher.search(
                &*self.lexical_query(text)?,
                &TopDocs::with_limit(k).order_by_score(),
            )?),
            (Mode::Dense, Some(dense), Some(vector)) => Ok(HybridSearcher::new(searcher, dense)
                .with_ann_params(ann)
                .dense(vector, None, k)?),
            (Mode::Hybrid, Some(dense), Some(vector)) => {
                let hybrid = HybridSearcher::new(searcher, dense)
                    .with_depth(self.args.depth)
                    .with_ann_params(ann);
                Ok(hybrid.search(
                    &*self.lexical_query(text)?,
                    vector,
                    None,
                    &*self.fusion(),
                    k,
                )?)
            }
            _ => bail!("dense and hybrid modes need a query embedding"),
        }
    }

    /// The document id (`_id` of the corpus) at `address`.
    pub fn doc_id(&self, searcher: &Searcher, address: DocAddress) -> Result<String> {
        let column = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .str(&self.config.id_field)?
            .context("the id field is not a fast field")?;
        let mut out = String::new();
        if let Some(ord) = column.term_ords(address.doc_id).next() {
            column.ord_to_str(ord, &mut out)?;
        }
        Ok(out)
    }

    /// The stored title of a document.
    fn title(&self, searcher: &Searcher, address: DocAddress) -> Result<String> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let title = self.index.schema().get_field(crate::index::TITLE_FIELD)?;
        Ok(doc
            .get_first(title)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string())
    }
}

/// Runs `ltre-cli search`.
pub fn run(args: Args) -> Result<()> {
    let mut retriever = Retriever::open(&args.retrieval)?;
    let vector = match args.retrieval.mode {
        Mode::Bm25 => None,
        _ => retriever.embed_queries(&[args.query.as_str()])?.pop(),
    };
    let searcher = retriever.searcher();
    let hits = retriever.retrieve(&searcher, &args.query, vector.as_deref(), args.k)?;
    let mut rows = Vec::with_capacity(hits.len());
    for (rank, (score, address)) in hits.iter().enumerate() {
        rows.push((
            rank + 1,
            *score,
            retriever.doc_id(&searcher, *address)?,
            retriever.title(&searcher, *address)?,
        ));
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
