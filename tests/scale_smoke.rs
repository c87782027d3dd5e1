//! Smoke test of the scale benchmark's code path (benches/scale) at 2,000 vectors: the index is
//! written, merged to one segment and searched; an HNSW segment index finds most of the exact
//! top 10. Behaviour only, no timing.
#[allow(dead_code)]
#[path = "../benches/scale/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../benches/scale/index.rs"]
mod index;

use ltre::tantivy::AnnParams;

const N: u64 = 2_000;

#[test]
fn scale_bench_path_writes_merges_and_finds_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data::Mixture::new(7);

    let built = index::build(&tmp.path().join("plain"), N, None, &data).unwrap();
    assert_eq!(built.report["docs"], N);
    assert!(built.report["disk_mib"].as_f64().unwrap() > (N * 384 * 4) as f64 / 1048576.0);
    let searcher = index::searcher(&built.index).unwrap();
    assert_eq!(
        searcher.segment_readers().len(),
        1,
        "merged into one segment"
    );
    assert_eq!(searcher.num_docs(), N);
    let exact = index::measure_exact(&built, &data, 8).unwrap();
    for key in [
        "exact_p50_ms",
        "read_p50_ms",
        "hybrid_rrf_p50_ms",
        "bm25_p50_ms",
    ] {
        assert!(exact[key].as_f64().unwrap() > 0.0, "{key}: {exact}");
    }

    let built = index::build(&tmp.path().join("hnsw"), N, Some("HNSW32"), &data).unwrap();
    let params = AnnParams {
        ef_search: Some(64),
        ..Default::default()
    };
    let ann = index::measure_ann(&built, &data, 20, &[params]).unwrap();
    let recall = ann["points"][0]["recall_at_10"].as_f64().unwrap();
    assert!(recall >= 0.8, "HNSW recall@10 {recall}");
}

#[test]
fn mixture_is_seeded_unit_and_clustered() {
    let data = data::Mixture::new(7);
    let (mut a, mut b) = (vec![0f32; data::DIM], vec![0f32; data::DIM]);
    data.doc(5, &mut a);
    data::Mixture::new(7).doc(5, &mut b);
    assert_eq!(a, b, "same seed, same row");
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    // A row usually has a cluster mate among 2,000 (about 2 per cluster) at cosine ~0.5;
    // random 384-d pairs stay below ~0.2.
    let rows: Vec<Vec<f32>> = (0..N)
        .map(|i| {
            let mut v = vec![0f32; data::DIM];
            data.doc(i, &mut v);
            v
        })
        .collect();
    let clustered = (0..20)
        .filter(|&i| {
            rows.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| r.iter().zip(&rows[i]).map(|(x, y)| x * y).sum::<f32>())
                .any(|cos| cos > 0.3)
        })
        .count();
    assert!(
        clustered >= 10,
        "{clustered} of 20 rows have a cluster mate"
    );
    assert_eq!(data.text(3, 4, false).split(' ').count(), 4);
}
