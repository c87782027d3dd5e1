//! `HybridCollector` against a brute-force fusion, on a multi-segment index with deletes, a
//! filter and documents without a vector.
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy::collector::{Count, TopDocs};
use tantivy::indexer::NoMergePolicy;
use tantivy::query::{BooleanQuery, EnableScoring, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::{
    DocAddress, DocSet, Executor, Index, IndexWriter, Score, Searcher, TantivyDocument, Term,
};
use tantivy_ltre::fusion::DenseInput;
use tantivy_ltre::{
    add_dense_field, Cascade, DenseField, DenseFieldOptions, DenseIndexWriter, DenseQuery, Fusion,
    HybridCollector, HybridHit, HybridSearcher, LinearFusion, Rrf,
};

const DIM: usize = 16;
const DOCS: u64 = 240;
const SEGMENTS: u64 = 4;

struct Fixture {
    index: Index,
    dense: DenseField,
    id: Field,
    category: Field,
    text: Field,
    /// Vectors by id (`None`: the document has none).
    vectors: HashMap<u64, Option<Vec<f32>>>,
}

fn has_vector(id: u64) -> bool {
    id % 11 != 5
}

fn deleted(id: u64) -> bool {
    id % 7 == 3
}

fn in_filter(id: u64) -> bool {
    id % 4 != 1
}

/// `SEGMENTS` segments (one commit each, no merges), deletes in every segment.
fn fixture() -> Fixture {
    let mut builder = Schema::builder();
    let id_field = builder.add_u64_field("id", INDEXED | STORED | FAST);
    let category = builder.add_text_field("category", STRING);
    let text = builder.add_text_field("text", TEXT);
    add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(DIM));
    let schema = builder.build();
    let dense = DenseField::from_schema(&schema).unwrap();
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_ram()
        .unwrap();
    let w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    w.set_merge_policy(Box::new(NoMergePolicy));
    let mut w = DenseIndexWriter::new(w, dense.clone());
    let mut rng = StdRng::seed_from_u64(42);
    let mut vectors = HashMap::new();
    for segment in 0..SEGMENTS {
        let per = DOCS / SEGMENTS;
        for id in segment * per..(segment + 1) * per {
            let mut doc = TantivyDocument::new();
            doc.add_u64(id_field, id);
            doc.add_text(category, if in_filter(id) { "a" } else { "b" });
            let words: Vec<String> = (0..rng.random_range(3..12))
                .map(|_| format!("w{}", rng.random_range(0..12)))
                .collect();
            doc.add_text(text, words.join(" "));
            let vector = has_vector(id).then(|| {
                let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
            });
            w.add_document(doc, vector.as_deref()).unwrap();
            vectors.insert(id, vector);
        }
        w.commit().unwrap();
    }
    for id in (0..DOCS).filter(|id| deleted(*id)) {
        w.writer().delete_term(Term::from_field_u64(id_field, id));
    }
    w.commit().unwrap();
    Fixture {
        index,
        dense,
        id: id_field,
        category,
        text,
        vectors,
    }
}

fn stored_id(searcher: &Searcher, f: &Fixture, address: DocAddress) -> u64 {
    let doc: TantivyDocument = searcher.doc(address).unwrap();
    doc.get_first(f.id).and_then(|v| v.as_u64()).unwrap()
}

fn lexical_query(f: &Fixture) -> Box<dyn Query> {
    let terms = ["w1", "w4", "w7"].map(|w| {
        let q: Box<dyn Query> = Box::new(TermQuery::new(
            Term::from_field_text(f.text, w),
            IndexRecordOption::WithFreqs,
        ));
        (Occur::Should, q)
    });
    Box::new(BooleanQuery::new(terms.into()))
}

fn filter(f: &Fixture) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(f.category, "a"),
        IndexRecordOption::Basic,
    ))
}

type Hits = Vec<(Score, DocAddress)>;

/// Best first, ties by ascending address.
fn sorted(mut hits: Hits) -> Hits {
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    hits
}

/// Every alive document: its address and id.
fn all_docs(searcher: &Searcher, f: &Fixture) -> Vec<(DocAddress, u64)> {
    let mut docs = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        for doc in reader.doc_ids_alive() {
            let address = DocAddress::new(ord as u32, doc);
            docs.push((address, stored_id(searcher, f, address)));
        }
    }
    docs
}

/// The whole lexical ranking (BM25 of every matching alive document), then the filter by hand.
fn brute_lexical(searcher: &Searcher, f: &Fixture, filtered: bool) -> Hits {
    let all = searcher
        .search(
            &*lexical_query(f),
            &TopDocs::with_limit(DOCS as usize).order_by_score(),
        )
        .unwrap();
    sorted(
        all.into_iter()
            .filter(|(_, a)| !filtered || in_filter(stored_id(searcher, f, *a)))
            .collect(),
    )
}

/// The whole dense ranking by a naive loop over the stored vectors.
fn brute_dense(searcher: &Searcher, f: &Fixture, query: &[f32], filtered: bool) -> Hits {
    let mut hits = Vec::new();
    for (address, id) in all_docs(searcher, f) {
        if filtered && !in_filter(id) {
            continue;
        }
        if let Some(Some(v)) = f.vectors.get(&id) {
            let score: f64 = v
                .iter()
                .zip(query)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            hits.push((score as f32, address));
        }
    }
    sorted(hits)
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Rrf,
    MinMax(f32),
    ZScore(f32),
    Cascade,
}

impl Method {
    fn fusion(self) -> Box<dyn Fusion> {
        match self {
            Method::Rrf => Box::new(Rrf::default()),
            Method::MinMax(alpha) => Box::new(LinearFusion::min_max(alpha)),
            Method::ZScore(alpha) => Box::new(LinearFusion::z_score(alpha)),
            Method::Cascade => Box::new(Cascade),
        }
    }
}

fn normalise(list: &Hits, z: bool) -> Vec<f32> {
    let scores: Vec<f32> = list.iter().map(|h| h.0).collect();
    if z {
        let n = scores.len() as f32;
        let mean = scores.iter().sum::<f32>() / n;
        let std = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
        scores
            .iter()
            .map(|s| if std > 0.0 { (s - mean) / std } else { 0.0 })
            .collect()
    } else {
        let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scores
            .iter()
            .map(|s| {
                if max > min {
                    (s - min) / (max - min)
                } else {
                    1.0
                }
            })
            .collect()
    }
}

/// The fusion formulas, by hand, over the two full rankings cut at `depth`. Returns the fused
/// top `k` and the two legs as fused.
fn brute_fusion(
    method: Method,
    lexical: &Hits,
    dense: &Hits,
    depth: usize,
    k: usize,
) -> (Hits, Hits, Hits) {
    let lexical: Hits = lexical.iter().take(depth).copied().collect();
    let dense: Hits = match method {
        Method::Cascade => sorted(
            dense
                .iter()
                .filter(|(_, a)| lexical.iter().any(|(_, l)| l == a))
                .copied()
                .collect(),
        ),
        _ => dense.iter().take(depth).copied().collect(),
    };
    let mut docs: Vec<DocAddress> = lexical.iter().chain(&dense).map(|h| h.1).collect();
    docs.sort();
    docs.dedup();
    let rank = |list: &Hits, a: DocAddress| list.iter().position(|(_, d)| *d == a);
    let fused: Hits = match method {
        Method::Rrf => docs
            .iter()
            .map(|a| {
                let mut s = 0.0f32;
                for list in [&lexical, &dense] {
                    if let Some(r) = rank(list, *a) {
                        s += 1.0 / (60.0 + r as f32 + 1.0);
                    }
                }
                (s, *a)
            })
            .collect(),
        Method::MinMax(alpha) | Method::ZScore(alpha) => {
            let z = matches!(method, Method::ZScore(_));
            let (ln, dn) = (normalise(&lexical, z), normalise(&dense, z));
            let below = if z { 1.0 } else { 0.0 };
            let lfloor = ln.iter().copied().fold(f32::INFINITY, f32::min) - below;
            let dfloor = dn.iter().copied().fold(f32::INFINITY, f32::min) - below;
            docs.iter()
                .map(|a| {
                    let l = rank(&lexical, *a).map_or(lfloor, |r| ln[r]);
                    let d = rank(&dense, *a).map_or(dfloor, |r| dn[r]);
                    (alpha * d + (1.0 - alpha) * l, *a)
                })
                .collect()
        }
        Method::Cascade => {
            let mut out: Hits = dense.clone();
            let lowest = dense.last().map_or(0.0, |h| h.0);
            let unscored = lexical.iter().filter(|(_, a)| rank(&dense, *a).is_none());
            for (i, (_, a)) in unscored.enumerate() {
                out.push((lowest - 1.0 - i as f32, *a));
            }
            out
        }
    };
    let mut fused = sorted(fused);
    fused.truncate(k);
    (fused, lexical, dense)
}

fn assert_same(got: &[HybridHit], expected: &Hits, what: &str) {
    let got_docs: Vec<DocAddress> = got.iter().map(|h| h.address).collect();
    let expected_docs: Vec<DocAddress> = expected.iter().map(|h| h.1).collect();
    assert_eq!(got_docs, expected_docs, "{what}: documents");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g.score - e.0).abs() < 1e-4,
            "{what}: score {} vs {}",
            g.score,
            e.0
        );
    }
}

/// Each hit's leg ranks and scores are its place in the brute-force legs.
fn assert_legs(got: &[HybridHit], lexical: &Hits, dense: &Hits, what: &str) {
    for hit in got {
        for (leg, list, name) in [
            (hit.lexical, lexical, "lexical"),
            (hit.dense, dense, "dense"),
        ] {
            let expected = list.iter().position(|(_, a)| *a == hit.address);
            assert_eq!(
                leg.map(|l| l.rank),
                expected.map(|r| r + 1),
                "{what}: {name} rank"
            );
            if let (Some(leg), Some(r)) = (leg, expected) {
                assert!((leg.score - list[r].0).abs() < 1e-5, "{what}: {name} score");
            }
        }
    }
}

const METHODS: [Method; 5] = [
    Method::Rrf,
    Method::MinMax(0.5),
    Method::ZScore(0.3),
    Method::ZScore(0.8),
    Method::Cascade,
];

#[test]
fn collector_matches_brute_force_fusion_for_every_fusion() {
    let f = fixture();
    let searcher = f.index.reader().unwrap().searcher();
    assert_eq!(searcher.segment_readers().len(), SEGMENTS as usize);
    assert!(searcher
        .segment_readers()
        .iter()
        .all(|r| r.num_deleted_docs() > 0));
    let query = f.vectors[&2].clone().unwrap();
    for filtered in [false, true] {
        let lexical = brute_lexical(&searcher, &f, filtered);
        let dense = brute_dense(&searcher, &f, &query, filtered);
        assert!(
            lexical.len() > 40 && dense.len() > 40,
            "the legs must be deeper than depth"
        );
        for method in METHODS {
            for (depth, k) in [(30, 10), (5, 12), (1000, 25)] {
                let what = format!("{method:?} depth {depth} k {k} filtered {filtered}");
                let mut collector = HybridCollector::new(&f.dense, &query, method.fusion(), k)
                    .unwrap()
                    .with_depth(depth);
                if filtered {
                    collector = collector.with_filter(filter(&f));
                }
                let hits = searcher
                    .search(
                        &*collector.filtered_lexical(&*lexical_query(&f)),
                        &collector,
                    )
                    .unwrap();
                let (expected, lex, den) = brute_fusion(method, &lexical, &dense, depth.max(k), k);
                assert_same(&hits, &expected, &what);
                assert_legs(&hits, &lex, &den, &what);
                if matches!(method, Method::Cascade) {
                    // Documents without a vector come last, with no dense leg.
                    let first_unscored = hits.iter().position(|h| h.dense.is_none());
                    if let Some(i) = first_unscored {
                        assert!(hits[i..].iter().all(|h| h.dense.is_none()), "{what}");
                    }
                }
                if filtered {
                    assert!(hits
                        .iter()
                        .all(|h| in_filter(stored_id(&searcher, &f, h.address))));
                }
            }
        }
    }
}

#[test]
fn hybrid_searcher_equals_the_separate_legs_fused() {
    // `HybridSearcher::search` (now the collector) against its own building blocks, which still
    // run the legs separately through `TopDocs`: same inputs to the fusion, same output.
    let f = fixture();
    let searcher = f.index.reader().unwrap().searcher();
    let query = f.vectors[&7].clone().unwrap();
    let lexical = lexical_query(&f);
    let filter = filter(&f);
    for depth in [3, 20, 100] {
        let hybrid = HybridSearcher::new(&searcher, &f.dense).with_depth(depth);
        for method in METHODS {
            for filter in [None, Some(&*filter)] {
                let fusion = method.fusion();
                let k = 10;
                let n = depth.max(k);
                let lex = hybrid.lexical(&*lexical, filter, n).unwrap();
                let den = match fusion.dense_input() {
                    DenseInput::TopN => hybrid.dense(&query, filter, n).unwrap(),
                    DenseInput::LexicalCandidates => hybrid.dense_scores(&query, &lex).unwrap(),
                };
                let expected = fusion.fuse(&lex, &den, k);
                let got = hybrid
                    .search(&*lexical, &query, filter, &*fusion, k)
                    .unwrap();
                assert_eq!(got, expected, "{method:?} depth {depth}");
            }
        }
    }
}

fn collector_again(f: &Fixture, query: &[f32]) -> HybridCollector<Rrf> {
    HybridCollector::new(&f.dense, query, Rrf::default(), 15)
        .unwrap()
        .with_depth(40)
        .with_filter(filter(f))
}

#[test]
fn count_and_collector_in_a_tuple() {
    let f = fixture();
    let searcher = f.index.reader().unwrap().searcher();
    let query = f.vectors[&11].clone().unwrap();
    let collector = collector_again(&f, &query);
    let lexical = collector.filtered_lexical(&*lexical_query(&f));
    let alone = searcher.search(&*lexical, &collector).unwrap();
    let (count, hits) = searcher.search(&*lexical, &(Count, collector)).unwrap();
    assert_eq!(count, brute_lexical(&searcher, &f, true).len());
    assert_eq!(hits.len(), 15);
    assert_same(
        &hits,
        &alone.iter().map(|h| (h.score, h.address)).collect(),
        "tuple",
    );
    assert_eq!(
        hits.iter()
            .map(|h| (h.lexical.map(|l| l.rank), h.dense.map(|d| d.rank)))
            .collect::<Vec<_>>(),
        alone
            .iter()
            .map(|h| (h.lexical.map(|l| l.rank), h.dense.map(|d| d.rank)))
            .collect::<Vec<_>>()
    );
    // Segments collected on several threads, merged in segment order: the same fruit.
    let executor = Executor::multi_thread(3, "hybrid-test").unwrap();
    let threaded = searcher
        .search_with_executor(
            &*lexical,
            &(Count, collector_again(&f, &query)),
            &executor,
            EnableScoring::enabled_from_searcher(&searcher),
        )
        .unwrap();
    assert_eq!(threaded, (count, hits));
}

#[test]
fn leg_ranks_and_scores_are_global() {
    let f = fixture();
    let searcher = f.index.reader().unwrap().searcher();
    let query = f.vectors[&20].clone().unwrap();
    // Depth 1000 keeps every candidate: each hit's legs are its ranks in the full rankings.
    let collector = HybridCollector::new(&f.dense, &query, LinearFusion::min_max(0.5), 50)
        .unwrap()
        .with_depth(1000);
    let hits = searcher.search(&*lexical_query(&f), &collector).unwrap();
    let lexical = brute_lexical(&searcher, &f, false);
    let dense = brute_dense(&searcher, &f, &query, false);
    assert_legs(&hits, &lexical, &dense, "global legs");
    // The self query is the dense leg's first hit, wherever its segment is.
    let me = dense[0].1;
    assert_eq!(stored_id(&searcher, &f, me), 20);
    let hit = hits
        .iter()
        .find(|h| h.address == me)
        .expect("self in the fused top 50");
    assert_eq!(hit.dense.map(|d| d.rank), Some(1));
    assert!((hit.dense.map_or(0.0, |d| d.score) - 1.0).abs() < 1e-5);
    // Documents without a vector can only come from the lexical leg.
    for hit in &hits {
        if !has_vector(stored_id(&searcher, &f, hit.address)) {
            assert!(hit.dense.is_none() && hit.lexical.is_some());
        }
    }
}

#[test]
fn empty_and_degenerate_requests_do_not_panic() {
    let f = fixture();
    let searcher = f.index.reader().unwrap().searcher();
    let query = f.vectors[&0].clone().unwrap();
    for method in METHODS {
        let zero = HybridCollector::new(&f.dense, &query, method.fusion(), 0)
            .unwrap()
            .with_depth(0);
        assert!(searcher
            .search(&*lexical_query(&f), &zero)
            .unwrap()
            .is_empty());
        let hybrid = HybridSearcher::new(&searcher, &f.dense).with_depth(0);
        let hits = hybrid
            .search(&*lexical_query(&f), &query, None, &*method.fusion(), 3)
            .unwrap();
        assert_eq!(hits.len(), 3, "depth = max(depth, k)");
    }
    assert!(HybridCollector::new(&f.dense, &[f32::NAN; DIM], Rrf::default(), 3).is_err());
    assert!(HybridCollector::new(&f.dense, &[1.0; 3], Rrf::default(), 3).is_err());
}

#[test]
fn dense_query_counts_and_explains_without_a_hit_list() {
    let f = fixture();
    let searcher = f.index.reader().unwrap().searcher();
    let query = f.vectors[&9].clone().unwrap();
    let alive_with_vector = brute_dense(&searcher, &f, &query, false);
    let filtered = brute_dense(&searcher, &f, &query, true);
    for k in [1, 10, 1000] {
        let q = DenseQuery::new(&f.dense, query.clone(), k).unwrap().exact();
        // count = sum over segments of min(k, alive documents with a vector).
        let expected: usize = searcher
            .segment_readers()
            .iter()
            .enumerate()
            .map(|(ord, _)| {
                alive_with_vector
                    .iter()
                    .filter(|(_, a)| a.segment_ord == ord as u32)
                    .count()
                    .min(k)
            })
            .sum();
        assert_eq!(q.count(&searcher).unwrap(), expected, "k {k}");
        let hits = searcher
            .search(&q, &TopDocs::with_limit(k).order_by_score())
            .unwrap();
        let n = k.min(alive_with_vector.len());
        assert_eq!(
            hits.iter().map(|h| h.1).collect::<Vec<_>>(),
            alive_with_vector[..n]
                .iter()
                .map(|h| h.1)
                .collect::<Vec<_>>()
        );
        for (hit, e) in hits.iter().zip(&alive_with_vector) {
            assert!((hit.0 - e.0).abs() < 1e-5);
            let explanation = q.explain(&searcher, hit.1).unwrap();
            assert!((explanation.value() - hit.0).abs() < 1e-6);
        }
        let fq = q.clone().with_filter(filter(&f));
        let expected: usize = (0..SEGMENTS as u32)
            .map(|ord| {
                filtered
                    .iter()
                    .filter(|(_, a)| a.segment_ord == ord)
                    .count()
                    .min(k)
            })
            .sum();
        assert_eq!(fq.count(&searcher).unwrap(), expected, "filtered, k {k}");
    }
    // The scorer scans on first use: before, its size hint is the bound `min(k, vectors in the
    // segment)` (deleted ones included); after, the hits' number.
    let q = DenseQuery::new(&f.dense, query.clone(), 1000).unwrap();
    let weight = q
        .weight(EnableScoring::disabled_from_searcher(&searcher))
        .unwrap();
    let reader = searcher.segment_reader(0);
    let mut scorer = weight.scorer(reader, 2.0).unwrap();
    let present = f.dense.segment_vectors(reader).unwrap().num_present();
    assert_eq!(scorer.size_hint(), present);
    let first = scorer.doc();
    assert!(
        scorer.size_hint() < present,
        "deleted documents are not hits"
    );
    assert_eq!(scorer.size_hint(), weight.count(reader).unwrap());
    let explained = weight.explain(reader, first).unwrap().value();
    assert!((scorer.score() - 2.0 * explained).abs() < 1e-5, "boosted");
    // Outside the top k, deleted, or without a vector: explain refuses.
    let q = DenseQuery::new(&f.dense, query.clone(), 2).unwrap();
    let far = *alive_with_vector.last().unwrap();
    assert!(q.explain(&searcher, far.1).is_err());
    let reader = searcher.segment_reader(0);
    let deleted_doc = (0..reader.max_doc())
        .find(|d| reader.is_deleted(*d))
        .unwrap();
    assert!(q
        .explain(&searcher, DocAddress::new(0, deleted_doc))
        .is_err());
    let (no_vector, _) = all_docs(&searcher, &f)
        .into_iter()
        .find(|(_, id)| !has_vector(*id))
        .unwrap();
    assert!(q.explain(&searcher, no_vector).is_err());
}
