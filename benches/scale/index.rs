//! Index side at one size: write through `DenseIndexWriter`, merge to one segment, then exact
//! `DenseQuery` latency against a plain read of the same bytes, hybrid RRF latency, and per-
//! segment ANN latency and recall against the exact answer.
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use ltre::tantivy::lexical::bag_of_words;
use ltre::tantivy::{
    add_dense_field, AnnOptions, AnnParams, DenseField, DenseFieldOptions, DenseIndexWriter,
    DenseQuery, HybridCollector, Rrf,
};
use serde_json::{json, Value};
use tantivy::collector::TopDocs;
use tantivy::indexer::NoMergePolicy;
use tantivy::schema::{Schema, TEXT};
use tantivy::{DocAddress, Index, IndexWriter, Searcher, TantivyDocument};

use crate::data::{dir_bytes, median, rss_mib, Mixture, DIM};

type BoxError = Box<dyn std::error::Error>;

/// Documents per commit, and the writer's threads and memory budget: a bulk load as an
/// application would run it on this 2-core machine.
const COMMIT_EVERY: u64 = 100_000;
const WRITER_THREADS: usize = 2;
const WRITER_BUDGET: usize = 512 << 20;
const WORDS_PER_DOC: usize = 6;
const WORDS_PER_QUERY: usize = 3;
const K: usize = 10;

pub struct Built {
    pub index: Index,
    pub dense: DenseField,
    pub text: tantivy::schema::Field,
    pub report: Value,
}

/// Writes `n` documents into a new index at `dir` (removed first) and merges it into one
/// segment; with `ann`, only the merged segment is big enough to get an ANN index.
pub fn build(dir: &Path, n: u64, ann: Option<&str>, data: &Mixture) -> Result<Built, BoxError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let mut builder = Schema::builder();
    let text = builder.add_text_field("text", TEXT);
    let mut options = DenseFieldOptions::new(DIM);
    if let Some(spec) = ann {
        // `FACTORY@E`: an HNSW graph built with efConstruction E.
        let ann = match spec.split_once('@') {
            Some((factory, ef)) => AnnOptions::new(factory, n as usize).with_ef_construction(
                ef.parse()
                    .map_err(|_| format!("bad efConstruction in `{spec}`"))?,
            ),
            None => AnnOptions::new(spec, n as usize),
        };
        options = options.with_ann(ann);
    }
    add_dense_field(&mut builder, "embedding", &options);
    let schema = builder.build();
    let dense = DenseField::from_schema(&schema)?;
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_dir(dir)?;
    let writer: IndexWriter = index.writer_with_num_threads(WRITER_THREADS, WRITER_BUDGET)?;
    writer.set_merge_policy(Box::new(NoMergePolicy));
    let mut writer = DenseIndexWriter::new(writer, dense.clone());
    let mut row = vec![0f32; DIM];
    let started = Instant::now();
    for i in 0..n {
        data.doc(i, &mut row);
        let mut doc = TantivyDocument::new();
        doc.add_text(text, data.text(i, WORDS_PER_DOC, false));
        writer.add_document(doc, Some(&row))?;
        if (i + 1) % COMMIT_EVERY == 0 {
            writer.commit()?;
        }
    }
    writer.commit()?;
    let write_s = started.elapsed().as_secs_f64();
    let ids = index.searchable_segment_ids()?;
    let segments = ids.len();
    let started = Instant::now();
    if ids.len() > 1 {
        writer.writer_mut().merge(&ids).wait()?;
    }
    let merge_s = started.elapsed().as_secs_f64();
    writer.writer_mut().garbage_collect_files().wait()?;
    writer.into_inner().wait_merging_threads()?;
    let report = json!({
        "docs": n,
        "write_s": write_s,
        "write_vectors_per_s": n as f64 / write_s,
        "segments_before_merge": segments,
        "merge_s": merge_s,
        "disk_mib": dir_bytes(dir) as f64 / (1 << 20) as f64,
    });
    Ok(Built {
        index,
        dense,
        text,
        report,
    })
}

pub fn searcher(index: &Index) -> Result<Searcher, BoxError> {
    let reader = index.reader()?;
    reader.reload()?;
    Ok(reader.searcher())
}

fn top(searcher: &Searcher, query: &DenseQuery) -> Result<Vec<DocAddress>, BoxError> {
    let hits = searcher.search(query, &TopDocs::with_limit(K).order_by_score())?;
    Ok(hits.into_iter().map(|(_, a)| a).collect())
}

/// A plain sequential read of every vector byte (16 independent sums, so the adds keep up with
/// memory): the bandwidth bound of a one-core scan.
fn read_all(searcher: &Searcher, dense: &DenseField) -> Result<f32, BoxError> {
    let mut total = 0f32;
    for reader in searcher.segment_readers() {
        let vectors = dense.segment_vectors(reader)?;
        let mut acc = [0f32; 16];
        for chunk in vectors.rows().chunks_exact(16) {
            for (a, x) in acc.iter_mut().zip(chunk) {
                *a += x;
            }
        }
        total += acc.iter().sum::<f32>();
    }
    Ok(total)
}

/// Exact top 10 p50 against the read bound (interleaved, same run), and hybrid RRF p50.
pub fn measure_exact(built: &Built, data: &Mixture, queries: u64) -> Result<Value, BoxError> {
    let searcher = searcher(&built.index)?;
    let bytes: usize = searcher
        .segment_readers()
        .iter()
        .map(|r| built.dense.segment_vectors(r).map(|v| v.rows().len() * 4))
        .sum::<Result<usize, _>>()?;
    // Warm the page cache and the code paths.
    black_box(read_all(&searcher, &built.dense)?);
    let (mut exact, mut bound, mut hybrid, mut bm25) = (vec![], vec![], vec![], vec![]);
    for j in 0..queries {
        let v = data.query(j);
        let query = DenseQuery::new(&built.dense, v.clone(), K)?.exact();
        let t = Instant::now();
        black_box(top(&searcher, &query)?);
        exact.push(t.elapsed().as_secs_f64());
        if j % 4 == 0 {
            let t = Instant::now();
            black_box(read_all(&searcher, &built.dense)?);
            bound.push(t.elapsed().as_secs_f64());
        }
        let text = data.text(j, WORDS_PER_QUERY, true);
        let lexical = bag_of_words(&built.index, &[built.text], &text)?;
        let t = Instant::now();
        black_box(searcher.search(&*lexical, &TopDocs::with_limit(K).order_by_score())?);
        bm25.push(t.elapsed().as_secs_f64());
        let collector = HybridCollector::new(&built.dense, &v, Rrf::default(), K)?.exact();
        let t = Instant::now();
        black_box(searcher.search(&*lexical, &collector)?);
        hybrid.push(t.elapsed().as_secs_f64());
    }
    let exact_ms = median(&mut exact) * 1e3;
    let bound_ms = median(&mut bound) * 1e3;
    // The same with every segment's vectors held open here: Tantivy's mmap cache then hands
    // the query the same, already populated mapping instead of a fresh one per open.
    let held: Vec<_> = searcher
        .segment_readers()
        .iter()
        .map(|r| built.dense.segment_vectors(r))
        .collect::<Result<_, _>>()?;
    black_box(read_all(&searcher, &built.dense)?);
    let (mut exact_held, mut bound_held) = (vec![], vec![]);
    for j in 0..queries / 4 {
        let query = DenseQuery::new(&built.dense, data.query(j), K)?.exact();
        let t = Instant::now();
        black_box(top(&searcher, &query)?);
        exact_held.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(read_all(&searcher, &built.dense)?);
        bound_held.push(t.elapsed().as_secs_f64());
    }
    drop(held);
    let exact_held_ms = median(&mut exact_held) * 1e3;
    let bound_held_ms = median(&mut bound_held) * 1e3;
    Ok(json!({
        "queries": queries,
        "segments": searcher.segment_readers().len(),
        "vector_mib": bytes as f64 / (1 << 20) as f64,
        "exact_p50_ms": exact_ms,
        "read_p50_ms": bound_ms,
        "read_gb_per_s": bytes as f64 / (bound_ms / 1e3) / 1e9,
        "exact_over_read": exact_ms / bound_ms,
        "exact_held_p50_ms": exact_held_ms,
        "read_held_p50_ms": bound_held_ms,
        "read_held_gb_per_s": bytes as f64 / (bound_held_ms / 1e3) / 1e9,
        "exact_held_over_read_held": exact_held_ms / bound_held_ms,
        "bm25_p50_ms": median(&mut bm25) * 1e3,
        "hybrid_rrf_p50_ms": median(&mut hybrid) * 1e3,
    }))
}

/// ANN p50 and recall@10 against the exact top 10, per query-time setting.
pub fn measure_ann(
    built: &Built,
    data: &Mixture,
    queries: u64,
    settings: &[AnnParams],
) -> Result<Value, BoxError> {
    let searcher = searcher(&built.index)?;
    let mut truth = Vec::new();
    let mut exact = Vec::new();
    for j in 0..queries {
        let query = DenseQuery::new(&built.dense, data.query(j), K)?.exact();
        let t = Instant::now();
        truth.push(top(&searcher, &query)?);
        exact.push(t.elapsed().as_secs_f64());
    }
    let exact_ms = median(&mut exact) * 1e3;
    let mut points = Vec::new();
    for params in settings {
        // One warm-up query loads the segment's index.
        top(
            &searcher,
            &DenseQuery::new(&built.dense, data.query(0), K)?.with_ann_params(*params),
        )?;
        let (mut times, mut found) = (Vec::new(), 0usize);
        for (j, truth) in truth.iter().enumerate() {
            let query =
                DenseQuery::new(&built.dense, data.query(j as u64), K)?.with_ann_params(*params);
            let t = Instant::now();
            let hits = top(&searcher, &query)?;
            times.push(t.elapsed().as_secs_f64());
            found += hits.iter().filter(|h| truth.contains(h)).count();
        }
        let p50 = median(&mut times) * 1e3;
        let point = json!({
            "nprobe": params.nprobe,
            "ef_search": params.ef_search,
            "rerank": params.rerank,
            "p50_ms": p50,
            "recall_at_10": found as f64 / (truth.len() * K) as f64,
            "speedup_vs_exact": exact_ms / p50,
        });
        eprintln!("  {point}");
        points.push(point);
    }
    Ok(json!({ "exact_p50_ms": exact_ms, "points": points }))
}

/// Peak and current RSS, MiB.
pub fn memory() -> Value {
    let (hwm, rss) = rss_mib();
    json!({ "peak_rss_mib": hwm, "rss_mib": rss })
}
