//! Encoding speed of all-MiniLM-L6-v2 through `Encoder`: one SciFact query at a time (latency)
//! and SciFact abstracts 32 per run (throughput).
//!
//! ```text
//! cargo bench --bench encode                    # criterion
//! cargo bench --bench encode -- --report        # p50 / docs/s as JSON, comparable with
//!                                               # scripts/bench_peer.py (same texts, same protocol)
//! python3 scripts/bench_peer.py --model DIR --paired target/release/deps/encode-HASH
//!                                               # both, interleaved (`--serve` mode here)
//! ```
//!
//! The model is exported into a temporary directory unless `LTRE_BENCH_MODEL` names an exported
//! directory; `LTRE_BENCH_THREADS` sets the intra-op threads (default: all cores). Needs
//! `bash scripts/setup.sh` (the checkpoint) and `../shared/data/scifact` (skipped when absent).
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use ltre::core::encoder::{EncoderOptions, TextKind};
use ltre::core::export::{export_checkpoint, ExportOptions};
use ltre::core::Encoder;

/// Queries timed one by one in `--report` mode (`LTRE_BENCH_QUERIES` overrides).
const REPORT_QUERIES: usize = 300;
/// Documents encoded per throughput pass in `--report` mode (`LTRE_BENCH_DOCS` overrides).
const REPORT_DOCS: usize = 512;
const DOC_BATCH: usize = 32;

/// The repository root (run-time CARGO_MANIFEST_DIR first: a shared target dir may hold a build
/// made from another checkout).
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn read_jsonl(
    path: &Path,
    limit: usize,
    text: impl Fn(&serde_json::Value) -> String,
) -> Vec<String> {
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .map(|l| {
            text(&serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .collect()
}

/// SciFact queries and documents (`title + " " + text`, as BEIR evaluates), or `None` with a
/// message when the data is not there.
fn scifact() -> Option<(Vec<String>, Vec<String>)> {
    let dir = root().join("../shared/data/scifact");
    if !dir.join("corpus.jsonl").is_file() || !dir.join("queries.jsonl").is_file() {
        eprintln!(
            "encode bench: skipping, {} not found (SciFact corpus.jsonl and queries.jsonl)",
            dir.display()
        );
        return None;
    }
    let queries = read_jsonl(
        &dir.join("queries.jsonl"),
        env_or("LTRE_BENCH_QUERIES", REPORT_QUERIES),
        |v| v["text"].as_str().unwrap().to_string(),
    );
    let docs = read_jsonl(
        &dir.join("corpus.jsonl"),
        env_or("LTRE_BENCH_DOCS", REPORT_DOCS),
        |v| {
            format!(
                "{} {}",
                v["title"].as_str().unwrap_or(""),
                v["text"].as_str().unwrap_or("")
            )
        },
    );
    Some((queries, docs))
}

/// The exported MiniLM directory and the temporary directory keeping it alive, or `None`.
fn model() -> Option<(PathBuf, Option<tempfile::TempDir>)> {
    if let Ok(dir) = std::env::var("LTRE_BENCH_MODEL") {
        return Some((PathBuf::from(dir), None));
    }
    let ckpt = root().join(".ltre/models/all-MiniLM-L6-v2");
    if !ckpt.join("model.safetensors").is_file() {
        eprintln!(
            "encode bench: skipping, {} missing; run `bash scripts/setup.sh`",
            ckpt.display()
        );
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("minilm-onnx");
    export_checkpoint(&ckpt, &out, &ExportOptions::default()).unwrap();
    Some((out, Some(tmp)))
}

fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn options() -> EncoderOptions {
    let mut options = EncoderOptions {
        batch_size: DOC_BATCH,
        ..Default::default()
    };
    options.threads = env_or("LTRE_BENCH_THREADS", options.threads);
    options
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The protocol of scripts/bench_peer.py: warm up, time each query alone (tokenisation included),
/// then the documents in one call (dynamic padding, 32 per run), three passes, median.
fn report(encoder: &Encoder, model: &Path, queries: &[String], docs: &[String]) {
    for q in queries.iter().take(20) {
        encoder.encode_queries(&[q]).unwrap();
    }
    encoder
        .encode_documents(&docs[..DOC_BATCH.min(docs.len())])
        .unwrap();

    let mut latencies: Vec<f64> = queries
        .iter()
        .map(|q| {
            let start = Instant::now();
            std::hint::black_box(encoder.encode_queries(&[q]).unwrap());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let mut tokenize: Vec<f64> = queries
        .iter()
        .map(|q| {
            let start = Instant::now();
            std::hint::black_box(encoder.tokenize(&[q], TextKind::Query).unwrap());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    tokenize.sort_by(f64::total_cmp);
    // The session alone, on pre-tokenised queries: what is left is the encoder's own overhead.
    let batches: Vec<_> = queries
        .iter()
        .map(|q| encoder.tokenize(&[q], TextKind::Query).unwrap())
        .collect();
    let mut run: Vec<f64> = batches
        .iter()
        .map(|b| {
            let start = Instant::now();
            std::hint::black_box(encoder.run(b).unwrap());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    run.sort_by(f64::total_cmp);

    let mut passes: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(encoder.encode_documents(docs).unwrap());
            start.elapsed().as_secs_f64()
        })
        .collect();
    passes.sort_by(f64::total_cmp);

    let report = serde_json::json!({
        "impl": "ltre (Rust, ort 2.0.0-rc.15, tokenizers 0.23)",
        "model": model.display().to_string(),
        "threads": encoder.options().threads,
        "query_batch": 1,
        "n_queries": queries.len(),
        "query_p50_ms": percentile(&latencies, 0.5),
        "query_p90_ms": percentile(&latencies, 0.9),
        "query_mean_ms": latencies.iter().sum::<f64>() / latencies.len() as f64,
        "query_tokenize_p50_ms": percentile(&tokenize, 0.5),
        "query_session_p50_ms": percentile(&run, 0.5),
        "doc_batch": DOC_BATCH,
        "n_docs": docs.len(),
        "doc_pass_s": passes,
        "docs_per_s": docs.len() as f64 / passes[1],
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// `--serve`: timing on request, for `scripts/bench_peer.py --paired`, which alternates its own
/// measurements with these so that both sides see the same background load. Reads one command
/// per line (`query I`, `session I`, `docs`) and answers with the elapsed milliseconds.
fn serve(encoder: &Encoder, queries: &[String], docs: &[String]) {
    use std::io::{BufRead, Write};
    let batches: Vec<_> = queries
        .iter()
        .map(|q| encoder.tokenize(&[q], TextKind::Query).unwrap())
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {} {}", queries.len(), docs.len()).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let start = Instant::now();
        match cmd {
            "query" => {
                let q = &queries[arg.parse::<usize>().unwrap()];
                std::hint::black_box(encoder.encode_queries(&[q]).unwrap());
            }
            "session" => {
                std::hint::black_box(
                    encoder
                        .run(&batches[arg.parse::<usize>().unwrap()])
                        .unwrap(),
                );
            }
            "docs" => {
                std::hint::black_box(encoder.encode_documents(docs).unwrap());
            }
            other => panic!("unknown command {other:?}"),
        }
        writeln!(out, "{}", start.elapsed().as_secs_f64() * 1e3).unwrap();
        out.flush().unwrap();
    }
}

fn bench(c: &mut Criterion, encoder: &Encoder, queries: &[String], docs: &[String]) {
    let mut group = c.benchmark_group("encode");
    let mut next = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("query", "batch1"), |b| {
        b.iter(|| {
            let q = &queries[next % queries.len()];
            next += 1;
            encoder.encode_queries(&[q]).unwrap()
        })
    });
    let batch = &docs[..DOC_BATCH.min(docs.len())];
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("documents", "batch32"), |b| {
        b.iter(|| encoder.encode_documents(batch).unwrap())
    });
    group.finish();
}

fn main() {
    let Some((queries, docs)) = scifact() else {
        return;
    };
    let Some((dir, _keep)) = model() else { return };
    let encoder = Encoder::load_with(&dir, options()).unwrap();
    if std::env::args().any(|a| a == "--serve") {
        serve(&encoder, &queries, &docs);
        return;
    }
    if std::env::args().any(|a| a == "--report") {
        report(&encoder, &dir, &queries, &docs);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &encoder, &queries, &docs);
    c.final_summary();
}
