//! Dense field, query, writer and hybrid search on small synthetic indexes.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy::collector::TopDocs;
use tantivy::indexer::NoMergePolicy;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::{DocAddress, Index, IndexWriter, Searcher, TantivyDocument, Term};
use tantivy_ltre::{
    add_dense_field, AnnOptions, AnnParams, Cascade, DenseField, DenseFieldOptions,
    DenseIndexWriter, DenseQuery, HybridSearcher, LinearFusion, Rrf, VectorError,
};

const DIM: usize = 16;

struct Fixture {
    index: Index,
    dense: DenseField,
    id: Field,
    category: Field,
    text: Field,
}

fn schema(options: &DenseFieldOptions) -> (Schema, Field, Field, Field) {
    let mut builder = Schema::builder();
    let id = builder.add_u64_field("id", INDEXED | STORED | FAST);
    let category = builder.add_text_field("category", STRING | STORED);
    let text = builder.add_text_field("text", TEXT);
    add_dense_field(&mut builder, "embedding", options);
    (builder.build(), id, category, text)
}

fn fixture_in(dir: Option<&std::path::Path>, options: DenseFieldOptions) -> Fixture {
    let (schema, id, category, text) = schema(&options);
    let dense = DenseField::from_schema(&schema).unwrap();
    let builder = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin());
    let index = match dir {
        Some(dir) => builder.create_in_dir(dir).unwrap(),
        None => builder.create_in_ram().unwrap(),
    };
    Fixture {
        index,
        dense,
        id,
        category,
        text,
    }
}

fn unit_vector(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn writer(f: &Fixture) -> DenseIndexWriter {
    let w: IndexWriter = f.index.writer_with_num_threads(1, 15_000_000).unwrap();
    w.set_merge_policy(Box::new(NoMergePolicy));
    DenseIndexWriter::new(w, f.dense.clone())
}

fn doc(f: &Fixture, id: u64) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_u64(f.id, id);
    doc.add_text(
        f.category,
        if id.is_multiple_of(3) {
            "even3"
        } else {
            "other"
        },
    );
    doc.add_text(f.text, format!("word{} common", id % 5));
    doc
}

fn stored_id(searcher: &Searcher, f: &Fixture, address: DocAddress) -> u64 {
    let doc: TantivyDocument = searcher.doc(address).unwrap();
    doc.get_first(f.id).and_then(|v| v.as_u64()).unwrap()
}

/// Adds `ids` with seeded vectors; returns the vectors by id.
fn add(
    f: &Fixture,
    w: &DenseIndexWriter,
    ids: std::ops::Range<u64>,
    rng: &mut StdRng,
) -> Vec<(u64, Vec<f32>)> {
    let vectors: Vec<(u64, Vec<f32>)> = ids.map(|id| (id, unit_vector(rng))).collect();
    let report = w
        .add_documents(vectors.iter().map(|(id, v)| (doc(f, *id), Some(v.clone()))))
        .unwrap();
    assert!(report.rejected.is_empty());
    vectors
}

fn top1(searcher: &Searcher, query: &dyn Query) -> Option<DocAddress> {
    searcher
        .search(query, &TopDocs::with_limit(1).order_by_score())
        .unwrap()
        .first()
        .map(|(_, a)| *a)
}

#[test]
fn reopened_index_has_every_vector_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut all = Vec::new();
    {
        let f = fixture_in(Some(dir.path()), DenseFieldOptions::new(DIM));
        let mut w = writer(&f);
        all.extend(add(&f, &w, 0..20, &mut rng));
        w.commit().unwrap();
        all.extend(add(&f, &w, 20..45, &mut rng));
        // One document without a vector.
        w.add_document(doc(&f, 99), None).unwrap();
        w.commit().unwrap();
    }
    let mut index = Index::open_in_dir(dir.path()).unwrap();
    let dense = DenseField::register(&mut index).unwrap();
    let id = index.schema().get_field("id").unwrap();
    let searcher = index.reader().unwrap().searcher();
    assert_eq!(searcher.num_docs(), 46);
    let mut seen = 0;
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let vectors = dense.segment_vectors(reader).unwrap();
        assert!(
            vectors.is_zero_copy(),
            "an mmap directory must be read in place"
        );
        for doc_id in 0..reader.max_doc() {
            let stored: TantivyDocument =
                searcher.doc(DocAddress::new(ord as u32, doc_id)).unwrap();
            let doc_key = stored.get_first(id).and_then(|v| v.as_u64()).unwrap();
            match all.iter().find(|(k, _)| *k == doc_key) {
                Some((_, v)) => {
                    assert_eq!(vectors.vector(doc_id), Some(&v[..]));
                    seen += 1;
                }
                None => assert_eq!((doc_key, vectors.vector(doc_id)), (99, None)),
            }
        }
    }
    assert_eq!(seen, 45);
    // Reopening without the plugin fails closed instead of dropping vectors on the next merge.
    let bare = Index::open_in_dir(dir.path()).unwrap();
    assert!(bare
        .writer_with_num_threads::<TantivyDocument>(1, 15_000_000)
        .is_err());
}

#[test]
fn self_queries_after_merges_and_deletes() {
    let f = fixture_in(None, DenseFieldOptions::new(DIM));
    let mut w = writer(&f);
    let mut rng = StdRng::seed_from_u64(2);
    let mut all = Vec::new();
    for batch in 0..4u64 {
        all.extend(add(&f, &w, batch * 30..batch * 30 + 30, &mut rng));
        if batch == 1 {
            w.add_document(doc(&f, 1000), None).unwrap(); // no vector, must survive the merge
        }
        w.commit().unwrap();
    }
    let deleted: Vec<u64> = (0..120).filter(|id| id % 7 == 0).collect();
    for id in &deleted {
        w.writer().delete_term(Term::from_field_u64(f.id, *id));
    }
    w.commit().unwrap();
    let segments = f.index.searchable_segment_ids().unwrap();
    assert_eq!(segments.len(), 4);
    w.writer_mut().merge(&segments).wait().unwrap();
    w.writer_mut().garbage_collect_files().wait().unwrap();

    let reader = f.index.reader().unwrap();
    reader.reload().unwrap();
    let searcher = reader.searcher();
    assert_eq!(searcher.segment_readers().len(), 1);
    // The merged-away segments' vector files were garbage-collected with them.
    let merged = searcher.segment_readers()[0].segment_id().uuid_string();
    let mut vector_files: Vec<String> = f
        .index
        .directory()
        .list_managed_files()
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".ltrevec") || p.ends_with(".ltreann"))
        .collect();
    vector_files.sort();
    assert_eq!(
        vector_files,
        vec![format!("{merged}.ltreann"), format!("{merged}.ltrevec")]
    );
    assert_eq!(searcher.num_docs(), 121 - deleted.len() as u64);
    let vectors = f
        .dense
        .segment_vectors(&searcher.segment_readers()[0])
        .unwrap();
    assert_eq!(vectors.num_present() as usize, 120 - deleted.len());
    for (id, v) in &all {
        let query = DenseQuery::new(&f.dense, v.clone(), 3).unwrap();
        let hit = top1(&searcher, &query).unwrap();
        let found = stored_id(&searcher, &f, hit);
        if deleted.contains(id) {
            assert_ne!(found, *id, "deleted doc {id} returned");
        } else {
            assert_eq!(found, *id, "self-query of {id}");
        }
    }
    // The vector-less document is never a dense hit.
    let everything = DenseQuery::new(&f.dense, all[0].1.clone(), 1000).unwrap();
    let hits = searcher
        .search(&everything, &TopDocs::with_limit(1000).order_by_score())
        .unwrap();
    assert_eq!(hits.len(), 120 - deleted.len());
    assert!(hits
        .iter()
        .all(|(_, a)| stored_id(&searcher, &f, *a) != 1000));
}

#[test]
fn boolean_filter_restricts_dense_results() {
    let f = fixture_in(None, DenseFieldOptions::new(DIM));
    let mut w = writer(&f);
    let mut rng = StdRng::seed_from_u64(3);
    let all = add(&f, &w, 0..60, &mut rng);
    w.commit().unwrap();
    let searcher = f.index.reader().unwrap().searcher();
    let filter = || -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(f.category, "even3"),
            IndexRecordOption::Basic,
        ))
    };
    // Query with the vector of a doc outside the filter: it must not come back.
    let (outside, v) = all.iter().find(|(id, _)| id % 3 != 0).unwrap();

    // Pre-filter: the top 5 among the filtered docs, scored by the inner product alone.
    let pre = DenseQuery::new(&f.dense, v.clone(), 5)
        .unwrap()
        .with_filter(filter());
    let hits = searcher
        .search(&pre, &TopDocs::with_limit(10).order_by_score())
        .unwrap();
    assert_eq!(hits.len(), 5);
    let mut expected: Vec<(f32, u64)> = all
        .iter()
        .filter(|(id, _)| id % 3 == 0)
        .map(|(id, u)| (u.iter().zip(v).map(|(a, b)| a * b).sum::<f32>(), *id))
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    for ((score, address), (want_score, want_id)) in hits.iter().zip(&expected) {
        assert_eq!(stored_id(&searcher, &f, *address), *want_id);
        assert!((score - want_score).abs() < 1e-5);
    }

    // Boolean post-filter: Must(ConstScore(filter, 0)) + Must(dense) keeps only filtered docs and
    // ranks them by the dense score.
    let boolean = BooleanQuery::new(vec![
        (
            Occur::Must,
            Box::new(ConstScoreQuery::new(filter(), 0.0)) as Box<dyn Query>,
        ),
        (
            Occur::Must,
            Box::new(DenseQuery::new(&f.dense, v.clone(), 60).unwrap()),
        ),
    ]);
    let hits = searcher
        .search(&boolean, &TopDocs::with_limit(100).order_by_score())
        .unwrap();
    assert_eq!(hits.len(), 20);
    for (score, address) in &hits {
        let id = stored_id(&searcher, &f, *address);
        assert!(id.is_multiple_of(3) && id != *outside);
        let want: f32 = all[id as usize].1.iter().zip(v).map(|(a, b)| a * b).sum();
        assert!((score - want).abs() < 1e-5);
    }
}

#[test]
fn bad_vectors_are_refused_and_the_rest_of_the_batch_is_kept() {
    let f = fixture_in(None, DenseFieldOptions::new(DIM).required());
    let mut w = writer(&f);
    let good = vec![0.25f32; DIM];
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    let mut inf = good.clone();
    inf[0] = f32::INFINITY;
    let batch = vec![
        (doc(&f, 0), Some(good.clone())),
        (doc(&f, 1), Some(vec![1.0; DIM - 1])),
        (doc(&f, 2), Some(nan)),
        (doc(&f, 3), Some(good.clone())),
        (doc(&f, 4), None),
        (doc(&f, 5), Some(inf)),
    ];
    let report = w.add_documents(batch).unwrap();
    assert_eq!(report.added, 2);
    let rejected: Vec<usize> = report.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, vec![1, 2, 4, 5]);
    assert_eq!(
        report.rejected[0].1,
        VectorError::WrongDimension {
            expected: DIM,
            got: DIM - 1
        }
    );
    assert!(matches!(
        report.rejected[1].1,
        VectorError::NotFinite { index: 3, .. }
    ));
    assert_eq!(report.rejected[2].1, VectorError::Missing);
    let message = report.rejected[0].1.to_string();
    assert!(
        message.contains("expected 16 dimensions, got 15"),
        "{message}"
    );
    assert!(w.add_document(doc(&f, 6), Some(&[0.0; 3])).is_err());
    let mut twice = doc(&f, 7);
    f.dense.set_vector(&mut twice, &good).unwrap();
    let report = w.add_documents(vec![(twice, Some(good.clone()))]).unwrap();
    assert_eq!(report.rejected, vec![(0, VectorError::Duplicate)]);
    assert!(DenseQuery::new(&f.dense, vec![f32::NAN; DIM], 1).is_err());
    w.commit().unwrap();

    let searcher = f.index.reader().unwrap().searcher();
    assert_eq!(searcher.num_docs(), 2);
    let hits = searcher
        .search(
            &DenseQuery::new(&f.dense, good, 10).unwrap(),
            &TopDocs::with_limit(10).order_by_score(),
        )
        .unwrap();
    let mut ids: Vec<u64> = hits
        .iter()
        .map(|(_, a)| stored_id(&searcher, &f, *a))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 3]);
}

#[test]
fn faiss_segment_index_finds_self_queries() {
    for (factory, params) in [
        (
            "HNSW16",
            AnnParams {
                ef_search: Some(64),
                ..Default::default()
            },
        ),
        (
            "IVF4,Flat",
            AnnParams {
                nprobe: Some(4),
                ..Default::default()
            },
        ),
    ] {
        let options = DenseFieldOptions::new(DIM).with_ann(AnnOptions::new(factory, 200));
        let f = fixture_in(None, options);
        let mut w = writer(&f);
        let mut rng = StdRng::seed_from_u64(4);
        let mut all = add(&f, &w, 0..300, &mut rng);
        w.commit().unwrap();
        all.extend(add(&f, &w, 300..350, &mut rng)); // below min_docs: exact scan
        w.commit().unwrap();
        let searcher = f.index.reader().unwrap().searcher();
        let mut ann_sizes: Vec<Option<usize>> = searcher
            .segment_readers()
            .iter()
            .map(|r| f.dense.ann_segment(r).unwrap().map(|a| a.len()))
            .collect();
        ann_sizes.sort();
        assert_eq!(
            ann_sizes,
            vec![None, Some(300)],
            "{factory}: only the big segment gets an index"
        );
        let mut found = 0;
        for (id, v) in &all {
            let query = DenseQuery::new(&f.dense, v.clone(), 1)
                .unwrap()
                .with_ann_params(params);
            if stored_id(&searcher, &f, top1(&searcher, &query).unwrap()) == *id {
                found += 1;
            }
        }
        assert!(found >= 340, "{factory}: self-query recall {found}/350");

        // After deleting and merging, the rebuilt index still finds the survivors.
        for id in 0..100u64 {
            w.writer().delete_term(Term::from_field_u64(f.id, id));
        }
        w.commit().unwrap();
        let segments = f.index.searchable_segment_ids().unwrap();
        w.writer_mut().merge(&segments).wait().unwrap();
        let reader = f.index.reader().unwrap();
        reader.reload().unwrap();
        let searcher = reader.searcher();
        let found = all[100..]
            .iter()
            .filter(|(id, v)| {
                let query = DenseQuery::new(&f.dense, v.clone(), 1)
                    .unwrap()
                    .with_ann_params(params);
                stored_id(&searcher, &f, top1(&searcher, &query).unwrap()) == *id
            })
            .count();
        assert!(found >= 245, "{factory} after merge: {found}/250");
        // An ANN parameter the index does not have is a clear error, not a silent no-op.
        let wrong = if params.nprobe.is_some() {
            AnnParams {
                ef_search: Some(8),
                ..Default::default()
            }
        } else {
            AnnParams {
                nprobe: Some(4),
                ..Default::default()
            }
        };
        let query = DenseQuery::new(&f.dense, all[200].1.clone(), 1)
            .unwrap()
            .with_ann_params(wrong);
        assert!(searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .is_err());
    }
}

#[test]
fn hybrid_search_applies_the_filter_on_both_sides() {
    let f = fixture_in(None, DenseFieldOptions::new(DIM));
    let mut w = writer(&f);
    let mut rng = StdRng::seed_from_u64(5);
    let all = add(&f, &w, 0..60, &mut rng);
    w.commit().unwrap();
    let searcher = f.index.reader().unwrap().searcher();
    let lexical = TermQuery::new(
        Term::from_field_text(f.text, "word1"),
        IndexRecordOption::WithFreqs,
    );
    let filter = TermQuery::new(
        Term::from_field_text(f.category, "even3"),
        IndexRecordOption::Basic,
    );
    let hybrid = HybridSearcher::new(&searcher, &f.dense).with_depth(20);
    let vector = &all[7].1; // id 7: category "other", so filtered out

    let fused = hybrid
        .search(&lexical, vector, Some(&filter), &Rrf::default(), 10)
        .unwrap();
    assert_eq!(fused.len(), 10);
    assert!(fused
        .iter()
        .all(|(_, a)| stored_id(&searcher, &f, *a).is_multiple_of(3)));
    // Without the filter, the document whose vector we used wins the dense side and shows up.
    let fused = hybrid
        .search(&lexical, vector, None, &Rrf::default(), 10)
        .unwrap();
    assert!(fused.iter().any(|(_, a)| stored_id(&searcher, &f, *a) == 7));

    // Cascade: only lexical candidates (ids with id % 5 == 1), re-ranked by the inner product.
    let cascade = hybrid.search(&lexical, vector, None, &Cascade, 5).unwrap();
    let mut expected: Vec<(f32, u64)> = all
        .iter()
        .filter(|(id, _)| id % 5 == 1)
        .map(|(id, u)| (u.iter().zip(vector).map(|(a, b)| a * b).sum::<f32>(), *id))
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    let got: Vec<u64> = cascade
        .iter()
        .map(|(_, a)| stored_id(&searcher, &f, *a))
        .collect();
    let want: Vec<u64> = expected.iter().take(5).map(|(_, id)| *id).collect();
    assert_eq!(got, want);
    assert!((cascade[0].0 - expected[0].0).abs() < 1e-5);
}

#[test]
fn dense_query_explains_and_counts() {
    let f = fixture_in(None, DenseFieldOptions::new(DIM));
    let mut w = writer(&f);
    let mut rng = StdRng::seed_from_u64(6);
    let all = add(&f, &w, 0..25, &mut rng);
    w.commit().unwrap();
    let searcher = f.index.reader().unwrap().searcher();
    let query = DenseQuery::new(&f.dense, all[4].1.clone(), 5).unwrap();
    assert_eq!(query.count(&searcher).unwrap(), 5);
    let hits = searcher
        .search(&query, &TopDocs::with_limit(5).order_by_score())
        .unwrap();
    let explanation = query.explain(&searcher, hits[0].1).unwrap();
    assert!((explanation.value() - hits[0].0).abs() < 1e-6);
    assert!(
        (hits[0].0 - 1.0).abs() < 1e-5,
        "a unit vector's self inner product is 1"
    );
    let outside = (0..25)
        .map(|d| DocAddress::new(0, d))
        .find(|a| hits.iter().all(|(_, h)| h != a))
        .unwrap();
    assert!(query.explain(&searcher, outside).is_err());
}

#[test]
fn linear_fusion_weights_move_between_the_two_rankings() {
    let f = fixture_in(None, DenseFieldOptions::new(DIM));
    let mut w = writer(&f);
    let mut rng = StdRng::seed_from_u64(7);
    let all = add(&f, &w, 0..40, &mut rng);
    w.commit().unwrap();
    let searcher = f.index.reader().unwrap().searcher();
    let lexical = TermQuery::new(
        Term::from_field_text(f.text, "word2"),
        IndexRecordOption::WithFreqs,
    );
    let hybrid = HybridSearcher::new(&searcher, &f.dense).with_depth(40);
    let vector = &all[11].1;
    let ids = |hits: &[(f32, DocAddress)]| -> Vec<u64> {
        hits.iter()
            .map(|(_, a)| stored_id(&searcher, &f, *a))
            .collect()
    };

    let dense_only = hybrid
        .search(&lexical, vector, None, &LinearFusion::min_max(1.0), 5)
        .unwrap();
    assert_eq!(
        ids(&dense_only),
        ids(&hybrid.dense(vector, None, 5).unwrap())
    );
    let lexical_hits = hybrid.lexical(&lexical, None, 40).unwrap();
    let lexical_only = hybrid
        .search(&lexical, vector, None, &LinearFusion::z_score(0.0), 3)
        .unwrap();
    // Every lexical hit has the same BM25 score here (same text length and tf), so only the
    // membership is determined: the top 3 are lexical hits.
    let lexical_ids = ids(&lexical_hits);
    assert!(ids(&lexical_only).iter().all(|id| lexical_ids.contains(id)));
    assert!(ids(&dense_only).contains(&11));
}

#[test]
fn ivf_pq_segment_index_keeps_self_queries_near_the_top() {
    let options = DenseFieldOptions::new(DIM).with_ann(AnnOptions::new("IVF4,PQ8x4np", 100));
    let f = fixture_in(None, options);
    let mut w = writer(&f);
    let mut rng = StdRng::seed_from_u64(8);
    let all = add(&f, &w, 0..300, &mut rng);
    w.commit().unwrap();
    let searcher = f.index.reader().unwrap().searcher();
    let ann = f.dense.ann_segment(&searcher.segment_readers()[0]).unwrap();
    assert_eq!(ann.map(|a| a.len()), Some(300));
    let params = AnnParams {
        nprobe: Some(4),
        ..Default::default()
    };
    let found = all
        .iter()
        .filter(|(id, v)| {
            let query = DenseQuery::new(&f.dense, v.clone(), 10)
                .unwrap()
                .with_ann_params(params);
            let hits = searcher
                .search(&query, &TopDocs::with_limit(10).order_by_score())
                .unwrap();
            hits.iter()
                .any(|(_, a)| stored_id(&searcher, &f, *a) == *id)
        })
        .count();
    // PQ scores are approximate: the document itself must still be in the top 10 nearly always.
    assert!(found >= 270, "self in top 10 for {found}/300");
    // The exact scan bypasses the index and is exact.
    let query = DenseQuery::new(&f.dense, all[5].1.clone(), 1)
        .unwrap()
        .exact();
    let top = searcher
        .search(&query, &TopDocs::with_limit(1).order_by_score())
        .unwrap();
    assert_eq!(stored_id(&searcher, &f, top[0].1), 5);
    assert!((top[0].0 - 1.0).abs() < 1e-5);
}
