//! Exact top 100 by inner product, one 384-d query at a time (batch 1), on the same unit random
//! vectors:
//!
//! - `dense_query`: `searcher.search(&DenseQuery, &TopDocs::with_limit(100))` on a single-segment
//!   RAM index (the whole query path: weight, segment open, scan, collector);
//! - `kernel`: `scan::top_k_rows` over the same segment rows (the scan the query runs);
//! - `faiss_flat_ip`: Faiss `IndexFlatIP` over a copy of the vectors.
//!
//! Medians on the 2-core development VM (quiet), 2026-11-25:
//!
//! | vectors | dense_query | kernel   | faiss_flat_ip | query / kernel | query / faiss |
//! |---------|-------------|----------|---------------|----------------|---------------|
//! | 5,183   | 116.1 µs    | 119.0 µs | 183.5 µs      | 0.98           | 0.63          |
//! | 100,000 | 5.29 ms     | 5.10 ms  | 5.47 ms       | 1.04           | 0.97          |
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faiss::{Index as _, MetricType};
use ltre::tantivy::scan::top_k_rows;
use ltre::tantivy::{add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter, DenseQuery};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tantivy::collector::TopDocs;
use tantivy::schema::Schema;
use tantivy::{Index, IndexWriter, Searcher, TantivyDocument};

const DIM: usize = 384;
const K: usize = 100;

fn unit_rows(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n * DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    for row in v.chunks_mut(DIM) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// A RAM index holding `rows` in one segment.
fn index(rows: &[f32]) -> (Searcher, DenseField) {
    let mut builder = Schema::builder();
    add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(DIM));
    let schema = builder.build();
    let dense = DenseField::from_schema(&schema).expect("dense field");
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_ram()
        .expect("index");
    let writer: IndexWriter = index
        .writer_with_num_threads(1, 1_000_000_000)
        .expect("writer");
    let mut writer = DenseIndexWriter::new(writer, dense.clone());
    for row in rows.chunks_exact(DIM) {
        writer
            .add_document(TantivyDocument::new(), Some(row))
            .expect("add");
    }
    writer.commit().expect("commit");
    let ids = index.searchable_segment_ids().expect("segments");
    if ids.len() > 1 {
        writer.writer_mut().merge(&ids).wait().expect("merge");
    }
    let reader = index.reader().expect("reader");
    reader.reload().expect("reload");
    let searcher = reader.searcher();
    assert_eq!(searcher.segment_readers().len(), 1, "one segment");
    (searcher, dense)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_top100");
    group.sample_size(30);
    for n in [5_183usize, 100_000] {
        let rows = unit_rows(n, 1);
        let query = unit_rows(1, 2);
        let (searcher, dense) = index(&rows);
        let vectors = dense
            .segment_vectors(searcher.segment_reader(0))
            .expect("vectors");
        let dense_query = DenseQuery::new(&dense, query.clone(), K).expect("query");
        let top_docs = TopDocs::with_limit(K).order_by_score();
        let mut flat =
            faiss::index_factory(DIM as u32, "Flat", MetricType::InnerProduct).expect("faiss");
        flat.add(&rows).expect("faiss add");

        // Same answer first, then time.
        let ours = searcher.search(&dense_query, &top_docs).expect("search");
        let kernel = top_k_rows(&query, vectors.rows(), DIM, K, |_| true);
        let theirs = flat.search(&query, K).expect("faiss search");
        let docs: Vec<u64> = ours.iter().map(|(_, a)| a.doc_id as u64).collect();
        assert_eq!(
            docs,
            kernel.iter().map(|(_, d)| *d as u64).collect::<Vec<_>>()
        );
        let faiss_docs: Vec<u64> = theirs.labels.iter().filter_map(|l| l.get()).collect();
        let common = docs.iter().filter(|d| faiss_docs.contains(d)).count();
        assert!(common >= K - 2, "faiss agrees on {common} of {K}");

        group.bench_with_input(BenchmarkId::new("dense_query", n), &n, |b, _| {
            b.iter(|| searcher.search(&dense_query, &top_docs).expect("search"))
        });
        group.bench_with_input(BenchmarkId::new("kernel", n), &n, |b, _| {
            b.iter(|| top_k_rows(&query, vectors.rows(), DIM, K, |_| true))
        });
        group.bench_with_input(BenchmarkId::new("faiss_flat_ip", n), &n, |b, _| {
            b.iter(|| flat.search(&query, K).expect("faiss search"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
