//! Exact inner-product scan (tantivy-ltre's per-segment kernel: contiguous rows, `dot` + top-k
//! heap) against Faiss `IndexFlatIP` on the same vectors, one query at a time (batch 1), top 10.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faiss::{Index, MetricType};
use ltre::tantivy::scan::{dot, TopK};
use rand::{rngs::StdRng, Rng, SeedableRng};

const DIM: usize = 384;

fn unit_rows(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n * DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    for row in v.chunks_mut(DIM) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn scan(rows: &[f32], query: &[f32], k: usize) -> Vec<(f32, u32)> {
    let mut top = TopK::new(k);
    for (doc, row) in rows.chunks_exact(DIM).enumerate() {
        top.push(dot(row, query), doc as u32);
    }
    top.into_sorted_vec()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_scan_top10");
    for n in [5_183usize, 100_000] {
        let rows = unit_rows(n, 1);
        let query = unit_rows(1, 2);
        let mut flat =
            faiss::index_factory(DIM as u32, "Flat", MetricType::InnerProduct).expect("faiss");
        flat.add(&rows).expect("faiss add");
        // Same answer first, then time.
        let ours = scan(&rows, &query, 10);
        let theirs = flat.search(&query, 10).expect("faiss search");
        assert_eq!(ours[0].1 as u64, theirs.labels[0].get().expect("label"));
        group.bench_with_input(BenchmarkId::new("ltre_exact_scan", n), &n, |b, _| {
            b.iter(|| scan(&rows, &query, 10))
        });
        group.bench_with_input(BenchmarkId::new("faiss_flat_ip", n), &n, |b, _| {
            b.iter(|| flat.search(&query, 10).expect("faiss search"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
