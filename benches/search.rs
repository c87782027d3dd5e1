//! Search latency on SciFact, one query at a time (batch 1): p50/p95 over the test queries of
//! Tantivy BM25, query encoding, dense (encode + exact scan), hybrid RRF, hybrid linear and
//! cascade, and the hybrid overhead beyond its parts (BM25 + encode + dense scan).
//!
//! ```text
//! bash scripts/bench_search.sh          # builds the index if needed, then runs this
//! cargo bench --bench search            # LTRE_BENCH_INDEX=DIR (default .ltre/work/scifact-index)
//! ```
//!
//! Env: `LTRE_BENCH_INDEX` (an index built by `ltre-cli index`), `LTRE_BENCH_DATA` (default
//! `../shared/data/scifact`), `LTRE_BENCH_QUERIES` (at most this many queries),
//! `LTRE_BENCH_THREADS` (encoder intra-op threads, default all cores). Prints a markdown table;
//! skips (exit 0) when the index or the data is absent.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ltre::core::data::{read_qrels, read_queries};
use ltre::core::encoder::EncoderOptions;
use ltre::core::Encoder;
use ltre::tantivy::encoders::EncoderStore;
use ltre::tantivy::{
    Cascade, EncoderChoice, Fusion, HybridSearcher, LinearFusion, LtreIndex, OpenOptions, Rrf,
};
use tantivy::collector::TopDocs;

/// Results returned per query.
const K: usize = 10;
/// Candidates per side of the hybrid searches (the CLI's default `--depth`).
const DEPTH: usize = 100;
/// Queries run once before timing.
const WARM_UP: usize = 20;

fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
}

fn env_path(name: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(name).map_or(default, PathBuf::from)
}

struct Stats {
    p50: f64,
    p95: f64,
    mean: f64,
}

/// Milliseconds.
fn stats(mut times: Vec<Duration>) -> Stats {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(times[((times.len() - 1) as f64 * q).round() as usize]);
    Stats {
        p50: at(0.5),
        p95: at(0.95),
        mean: times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) must not time anything.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let index_dir = env_path("LTRE_BENCH_INDEX", root().join(".ltre/work/scifact-index"));
    let data = env_path("LTRE_BENCH_DATA", root().join("../shared/data/scifact"));
    if !index_dir.join("ltre.json").is_file() || !data.join("queries.jsonl").is_file() {
        println!(
            "search bench skipped: no index at {} (LTRE_BENCH_INDEX; scripts/bench_search.sh builds one) or no data at {}",
            index_dir.display(),
            data.display()
        );
        return;
    }
    run(&index_dir, &data);
}

fn run(index_dir: &Path, data: &Path) {
    // The library's view of the index: dense plugin, BM25 fields and the BM25 query of
    // `ltre-cli search`. The encoder is loaded below with batch size 1, timed on its own.
    let index = LtreIndex::open_with(
        index_dir,
        &OpenOptions {
            query_encoder: EncoderChoice::None,
            ..OpenOptions::default()
        },
    )
    .expect("open the ltre index");
    let dense = index.dense_field().expect("a dense field").clone();
    let searcher = index.searcher();

    let mut options = EncoderOptions {
        batch_size: 1,
        ..Default::default()
    };
    if let Some(threads) = std::env::var("LTRE_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
    {
        options.threads = threads;
    }
    let store = EncoderStore::new(index_dir);
    let encoder = Encoder::load_with(store.active_dir().expect("active encoder"), options)
        .expect("load encoder");

    let qrels = read_qrels(data.join("qrels/test.tsv")).expect("qrels");
    let limit = std::env::var("LTRE_BENCH_QUERIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let queries: Vec<String> = read_queries(data.join("queries.jsonl"))
        .expect("queries")
        .into_iter()
        .filter(|q| qrels.contains_key(&q.id))
        .take(limit)
        .map(|q| q.text)
        .collect();

    let hybrid = HybridSearcher::new(&searcher, &dense).with_depth(DEPTH);
    let embed = |text: &str| -> Vec<f32> {
        encoder
            .encode_queries(&[text])
            .expect("encode")
            .row(0)
            .to_vec()
    };
    let vectors: Vec<Vec<f32>> = queries.iter().map(|q| embed(q)).collect();
    let fusions: [(&str, Box<dyn Fusion>); 3] = [
        ("hybrid rrf (k=60)", Box::new(Rrf::default())),
        (
            "hybrid linear (min-max, 0.5)",
            Box::new(LinearFusion::min_max(0.5)),
        ),
        ("cascade (bm25 top 100)", Box::new(Cascade)),
    ];

    // Each case times one query end to end, query text in, top-k out.
    type Case<'a> = Box<dyn Fn(usize) + 'a>;
    let mut cases: Vec<(String, Case)> = vec![
        (
            format!("bm25 top {K}"),
            Box::new(|i| {
                let q = index.lexical_query(&queries[i]).expect("bm25 query");
                searcher
                    .search(&*q, &TopDocs::with_limit(K).order_by_score())
                    .expect("bm25");
            }),
        ),
        (
            format!("bm25 top {DEPTH} (hybrid part)"),
            Box::new(|i| {
                let q = index.lexical_query(&queries[i]).expect("bm25 query");
                hybrid.lexical(&*q, None, DEPTH).expect("bm25");
            }),
        ),
        (
            "query encode".into(),
            Box::new(|i| {
                embed(&queries[i]);
            }),
        ),
        (
            format!("dense scan top {DEPTH} (hybrid part)"),
            Box::new(|i| {
                hybrid.dense(&vectors[i], None, DEPTH).expect("scan");
            }),
        ),
        (
            format!("dense (encode + scan) top {K}"),
            Box::new(|i| {
                hybrid.dense(&embed(&queries[i]), None, K).expect("dense");
            }),
        ),
    ];
    for (name, fusion) in &fusions {
        let (hybrid, index, queries) = (&hybrid, &index, &queries);
        cases.push((
            format!("{name} top {K}"),
            Box::new(move |i| {
                let q = index.lexical_query(&queries[i]).expect("bm25 query");
                hybrid
                    .search(&*q, &embed(&queries[i]), None, &**fusion, K)
                    .expect("hybrid");
            }),
        ));
    }

    println!(
        "search latency, batch 1, {} SciFact test queries, {} documents, index {}",
        queries.len(),
        searcher.num_docs(),
        index_dir.display()
    );
    println!();
    println!("| case | p50 ms | p95 ms | mean ms |");
    println!("|---|---:|---:|---:|");
    for case in &cases {
        for i in 0..WARM_UP.min(queries.len()) {
            case.1(i);
        }
    }
    // Query-major order: every case sees the same background load, so the comparison between
    // cases (the overhead below) stays meaningful on a busy machine.
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(queries.len()); cases.len()];
    for i in 0..queries.len() {
        for (case, times) in cases.iter().zip(&mut times) {
            let start = Instant::now();
            case.1(i);
            times.push(start.elapsed());
        }
    }
    let results: Vec<Stats> = times.into_iter().map(stats).collect();
    for ((name, _), s) in cases.iter().zip(&results) {
        println!("| {name} | {:.3} | {:.3} | {:.3} |", s.p50, s.p95, s.mean);
    }
    // Parts of a hybrid query: BM25 top 100 + encode + dense scan top 100.
    let parts_p50 = results[1].p50 + results[2].p50 + results[3].p50;
    let parts_mean = results[1].mean + results[2].mean + results[3].mean;
    // Means add up, percentiles do not (the p50 of a sum is not the sum of the p50s): the mean
    // column is the overhead estimate, the p50 column a sanity check.
    println!();
    println!("| hybrid overhead beyond bm25 + encode + dense scan | mean (estimate) | p50 |");
    println!("|---|---:|---:|");
    for ((name, _), s) in cases.iter().zip(&results).skip(5) {
        println!(
            "| {name} | {:+.1}% | {:+.1}% |",
            100.0 * (s.mean / parts_mean - 1.0),
            100.0 * (s.p50 / parts_p50 - 1.0)
        );
    }
}
