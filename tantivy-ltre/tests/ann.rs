//! Per-segment approximate indexes: candidates re-scored exactly (`AnnParams::rerank`) and the
//! HNSW build's `efConstruction` (`AnnOptions::ef_construction`).
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy::collector::TopDocs;
use tantivy::schema::{Schema, STORED, STRING};
use tantivy::{DocAddress, Index, IndexWriter, Searcher, TantivyDocument};
use tantivy_ltre::{
    add_dense_field, AnnOptions, AnnParams, DenseField, DenseFieldOptions, DenseIndexWriter,
    DenseQuery,
};

const DIM: usize = 32;
const DOCS: usize = 400;

fn vector(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// One segment of `DOCS` seeded vectors with a per-segment index built by `ann`.
fn index(ann: AnnOptions) -> (Index, DenseField, Vec<Vec<f32>>) {
    let mut builder = Schema::builder();
    let id = builder.add_text_field("id", STRING | STORED);
    add_dense_field(
        &mut builder,
        "embedding",
        &DenseFieldOptions::new(DIM).with_ann(ann),
    );
    let schema = builder.build();
    let dense = DenseField::from_schema(&schema).unwrap();
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_ram()
        .unwrap();
    let writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    let mut writer = DenseIndexWriter::new(writer, dense.clone());
    let mut rng = StdRng::seed_from_u64(11);
    let vectors: Vec<Vec<f32>> = (0..DOCS).map(|_| vector(&mut rng)).collect();
    let report = writer
        .add_documents(vectors.iter().enumerate().map(|(i, v)| {
            let mut doc = TantivyDocument::new();
            doc.add_text(id, i.to_string());
            (doc, Some(v.clone()))
        }))
        .unwrap();
    assert!(report.rejected.is_empty());
    writer.commit().unwrap();
    (index, dense, vectors)
}

fn top(searcher: &Searcher, query: &DenseQuery, k: usize) -> Vec<(f32, DocAddress)> {
    searcher
        .search(query, &TopDocs::with_limit(k).order_by_score())
        .unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn quantised_candidates_are_rescored_exactly_and_rerank_recovers_the_exact_top_k() {
    // 4 sub-quantisers of 8 dims with 16 centroids each: far too coarse to order neighbours.
    let (index, dense, vectors) = index(AnnOptions::new("IVF4,PQ4x4np", 100));
    let searcher = index.reader().unwrap().searcher();
    let reader = &searcher.segment_readers()[0];
    assert!(dense.ann_segment(reader).unwrap().is_some(), "no PQ index");
    let mut rng = StdRng::seed_from_u64(12);
    let k = 10;
    let (mut plain_found, mut reranked_found, mut exact_total) = (0, 0, 0);
    for _ in 0..20 {
        let q = vector(&mut rng);
        let exact = top(
            &searcher,
            &DenseQuery::new(&dense, q.clone(), k).unwrap().exact(),
            k,
        );
        let plain = DenseQuery::new(&dense, q.clone(), k)
            .unwrap()
            .with_ann_params(AnnParams {
                nprobe: Some(4),
                ..Default::default()
            });
        let plain = top(&searcher, &plain, k);
        let reranked = DenseQuery::new(&dense, q.clone(), k)
            .unwrap()
            .with_ann_params(AnnParams {
                nprobe: Some(4),
                rerank: Some(DOCS),
                ..Default::default()
            });
        let reranked = top(&searcher, &reranked, k);
        // Every hit carries its true inner product, whatever the index's own estimate was.
        for (score, address) in plain.iter().chain(&reranked) {
            let expected = dot(&q, &vectors[address.doc_id as usize]);
            assert!(
                (score - expected).abs() < 1e-5,
                "score {score} for a true inner product {expected}"
            );
        }
        // Fetching every row as a candidate is the exact scan, order and scores included.
        assert_eq!(reranked, exact);
        let contains = |hits: &[(f32, DocAddress)], a: &DocAddress| hits.iter().any(|h| h.1 == *a);
        plain_found += exact.iter().filter(|h| contains(&plain, &h.1)).count();
        reranked_found += exact.iter().filter(|h| contains(&reranked, &h.1)).count();
        exact_total += exact.len();
    }
    assert_eq!(reranked_found, exact_total);
    // The index's own top k misses part of the exact top k (what `rerank` is for).
    assert!(
        plain_found < exact_total,
        "the coarse PQ found the whole exact top k"
    );
}

#[test]
fn hnsw_takes_ef_construction_and_other_indexes_refuse_it() {
    let options = AnnOptions::new("HNSW8", 100).with_ef_construction(200);
    options.validate(DIM).unwrap();
    let (index, dense, vectors) = index(options);
    let searcher = index.reader().unwrap().searcher();
    assert!(dense
        .ann_segment(&searcher.segment_readers()[0])
        .unwrap()
        .is_some());
    let found = vectors
        .iter()
        .enumerate()
        .filter(|(i, v)| {
            let query = DenseQuery::new(&dense, v.to_vec(), 1)
                .unwrap()
                .with_ann_params(AnnParams {
                    ef_search: Some(32),
                    ..Default::default()
                });
            top(&searcher, &query, 1)[0].1.doc_id as usize == *i
        })
        .count();
    assert!(found >= DOCS * 98 / 100, "self-query recall {found}/{DOCS}");

    // The schema keeps the setting; options without it serialise as before (old indexes read).
    let reopened = DenseField::from_schema(&index.schema()).unwrap();
    let ann = reopened.options().ann.clone().unwrap();
    assert_eq!(ann.ef_construction, Some(200));
    let plain = serde_json::to_value(AnnOptions::new("HNSW8", 100)).unwrap();
    assert!(plain.get("ef_construction").is_none(), "{plain}");

    let err = AnnOptions::new("IVF4,Flat", 100)
        .with_ef_construction(200)
        .validate(DIM)
        .unwrap_err()
        .to_string();
    assert!(err.contains("efConstruction"), "{err}");
    let err = AnnOptions::new("NoSuchIndex", 100)
        .validate(DIM)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NoSuchIndex"), "{err}");
}
