//! The feedback log: round trip, duplicates, a torn tail left by a kill, malformed lines,
//! concurrent appends, and the key property: feedback simulated from judged queries trains
//! exactly like the judged queries themselves.
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ltre_core::testing::{export_tiny_model, tiny_judged, TinyJudged};
use ltre_core::trainer::TrainConfig;
use tantivy_ltre::corpus::{index_corpus, CorpusOptions};
use tantivy_ltre::feedback::{
    keyed_by_text, records_from_beir, FeedbackLog, FeedbackPolicy, FeedbackRecord, Signal,
};
use tantivy_ltre::finetune::{
    DevSet, FineTuneOptions, FineTuneOutcome, FineTuneReport, JudgedQuery, TrainingData,
    TunableIndex,
};

fn log_in(dir: &Path) -> FeedbackLog {
    FeedbackLog::open(dir).unwrap()
}

fn sample() -> Vec<FeedbackRecord> {
    vec![
        FeedbackRecord::grade("red boots", "d1", 2).at(100),
        FeedbackRecord::click("red boots", "d2").at(101),
        FeedbackRecord::grade("a tent \"for\" two\n", "d3", 0).at(102),
        FeedbackRecord::grade("lamp", "d4", -1).at(103),
    ]
}

#[test]
fn append_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    // Nothing recorded yet: empty, not an error; nothing created by reading.
    assert!(log.read().unwrap().records.is_empty());
    assert!(!log.path().exists());
    let report = log.append(&sample()).unwrap();
    assert_eq!((report.appended, report.repaired_tail_bytes), (4, 0));
    log.append(&[FeedbackRecord::click("lamp", "d4").at(104)])
        .unwrap();
    let read = log.read().unwrap();
    let mut expected = sample();
    expected.push(FeedbackRecord::click("lamp", "d4").at(104));
    assert_eq!(read.records, expected);
    assert_eq!(read.torn_tail_bytes, 0);
    assert_eq!(read.iter().count(), 5);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text.ends_with('\n'));
    assert_eq!(log.path(), dir.path().join("feedback").join("log.jsonl"));

    let err = FeedbackLog::open(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn bad_records_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    for (bad, why) in [
        (FeedbackRecord::grade("  ", "d1", 1), "query text is empty"),
        (FeedbackRecord::click("q", ""), "document id is empty"),
        (FeedbackRecord::grade("q", "d1", 1001), "outside -1..=1000"),
        (FeedbackRecord::grade("q", "d1", -2), "outside -1..=1000"),
    ] {
        let mut batch = sample();
        batch.insert(2, bad);
        let err = log.append(&batch).unwrap_err().to_string();
        assert!(err.contains(why) && err.contains("record 3 of 5"), "{err}");
    }
    assert!(log.read().unwrap().records.is_empty());
}

#[test]
fn duplicates_are_counted_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    log.append(&sample()).unwrap();
    let once = log.to_training_data(&FeedbackPolicy::default()).unwrap();
    // A retried batch: every record an exact repeat.
    log.append(&sample()).unwrap();
    // The same click at another time is another click.
    log.append(&[FeedbackRecord::click("red  boots ", "d2").at(200)])
        .unwrap();
    let stats = log.stats().unwrap();
    assert_eq!(stats.records, 9);
    assert_eq!(stats.duplicates, 4);
    assert_eq!((stats.grades, stats.clicks), (6, 3));
    assert_eq!((stats.distinct_queries, stats.distinct_pairs), (3, 4));
    assert_eq!((stats.first_time, stats.last_time), (Some(100), Some(200)));
    let twice = log.to_training_data(&FeedbackPolicy::default()).unwrap();
    assert_eq!(twice, once);
    // Two distinct clicks now reach min_clicks = 2; one did not.
    let strict = FeedbackPolicy::default().min_clicks(2);
    assert!(
        judgments(log.to_training_data(&strict).unwrap().queries()).contains(&(
            "red boots".into(),
            "d2".into(),
            1
        ))
    );
    assert_eq!(
        judgments(once.queries()),
        vec![
            ("red boots".into(), "d1".into(), 2),
            ("red boots".into(), "d2".into(), 1),
            ("a tent \"for\" two".into(), "d3".into(), 0),
            ("lamp".into(), "d4".into(), -1),
        ]
    );
    let text = stats.to_string();
    assert!(text.contains("4 exact duplicates"), "{text}");
}

/// A kill mid-append, simulated by writing part of a line by hand: ignored and reported by
/// readers, removed by the next append.
#[test]
fn torn_tail_is_ignored_reported_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    log.append(&sample()).unwrap();
    let torn = br#"{"query":"red boots","doc":"d9","gra"#;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap();
    file.write_all(torn).unwrap();
    drop(file);

    let read = log.read().unwrap();
    assert_eq!(read.records, sample());
    assert_eq!(read.torn_tail_bytes, torn.len() as u64);
    let stats = log.stats().unwrap();
    assert_eq!(stats.torn_tail_bytes, torn.len() as u64);
    assert!(stats.to_string().contains("torn last line"), "{stats}");
    // Training is not blocked by it.
    assert_eq!(
        log.to_training_data(&FeedbackPolicy::default())
            .unwrap()
            .queries()
            .len(),
        3
    );

    let extra = FeedbackRecord::click("lamp", "d5").at(300);
    let report = log.append(std::slice::from_ref(&extra)).unwrap();
    assert_eq!(report.repaired_tail_bytes, torn.len() as u64);
    let read = log.read().unwrap();
    assert_eq!(read.torn_tail_bytes, 0);
    let mut expected = sample();
    expected.push(extra);
    assert_eq!(read.records, expected);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.ends_with('\n') && !text.contains("gra\""), "{text}");

    // A kill before the first newline ever written: the whole file is the torn line.
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    std::fs::create_dir_all(log.path().parent().unwrap()).unwrap();
    std::fs::write(log.path(), torn).unwrap();
    assert!(log.read().unwrap().records.is_empty());
    assert_eq!(
        log.append(&sample()).unwrap().repaired_tail_bytes,
        torn.len() as u64
    );
    assert_eq!(log.read().unwrap().records, sample());
}

#[test]
fn malformed_complete_line_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    log.append(&sample()[..2]).unwrap();
    let good = std::fs::read_to_string(log.path()).unwrap();
    for (middle, why) in [
        ("{\"query\": \"x\", \"doc\": ", "EOF"),
        (
            r#"{"query":"x","doc":"d1","grade":5000,"time":1}"#,
            "outside",
        ),
        (r#"{"query":"x","doc":"d1","grade":1}"#, "time"),
        ("not json", "expected"),
    ] {
        let lines: Vec<&str> = good.lines().collect();
        std::fs::write(
            log.path(),
            format!("{}\n{middle}\n{}\n", lines[0], lines[1]),
        )
        .unwrap();
        let err = log.read().unwrap_err().to_string();
        assert!(
            err.contains("log.jsonl") && err.contains("line 2") && err.contains(why),
            "{err}"
        );
        let err = log
            .to_training_data(&FeedbackPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
    // Blank lines (hand edits) are skipped and counted.
    std::fs::write(log.path(), format!("\n{good}\n")).unwrap();
    let read = log.read().unwrap();
    assert_eq!((read.records.len(), read.blank_lines), (2, 2));
}

#[test]
fn concurrent_appends_lose_and_interleave_nothing() {
    const THREADS: usize = 8;
    const BATCHES: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().to_path_buf();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let index_dir = index_dir.clone();
            std::thread::spawn(move || {
                // Each thread its own handle, as separate processes would have.
                let log = FeedbackLog::open(&index_dir).unwrap();
                for b in 0..BATCHES {
                    // A long query makes a torn or interleaved write visible.
                    let query = format!("thread {t} {}", "word ".repeat(200));
                    let batch: Vec<FeedbackRecord> = (0..3)
                        .map(|i| FeedbackRecord::grade(&query, format!("t{t}-b{b}-r{i}"), 1).at(1))
                        .collect();
                    log.append(&batch).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let log = log_in(&index_dir);
    let read = log.read().unwrap();
    assert_eq!(read.torn_tail_bytes, 0);
    assert_eq!(read.records.len(), THREADS * BATCHES * 3);
    let docs: BTreeSet<&str> = read.records.iter().map(|r| r.doc.as_str()).collect();
    assert_eq!(docs.len(), THREADS * BATCHES * 3);
    // Each batch's three lines are adjacent: batches never interleave.
    for chunk in read.records.chunks(3) {
        let prefix = chunk[0].doc.rsplit_once('-').unwrap().0;
        assert!(chunk.iter().all(|r| r.doc.starts_with(prefix)), "{chunk:?}");
    }
    assert_eq!(log.stats().unwrap().duplicates, 0);
}

// ---- The key property: simulated feedback trains like the judgments it replays. ----

const DOCS: usize = 40;
const QUERIES: usize = 24;

/// A synthetic collection over the tiny vocabulary: each query is two words of its relevant
/// document (grade 2), another relevant one (grade 1), a judged non-relevant one (grade 0) and
/// a document missing from the index. Returns (corpus, queries, qrels).
fn write_collection(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let TinyJudged {
        corpus,
        queries,
        qrels,
    } = tiny_judged(DOCS, QUERIES, 5, 7, [2, 5], |q, d| {
        format!(
            "q{q}\td{d}\t2\nq{q}\td{}\t1\nq{q}\td{}\t0\nq{q}\tgone{q}\t1\n",
            (d + 3) % DOCS,
            (d + 11) % DOCS
        )
    });
    let paths = (
        root.join("corpus.jsonl"),
        root.join("queries.jsonl"),
        root.join("qrels.tsv"),
    );
    std::fs::write(&paths.0, corpus).unwrap();
    std::fs::write(&paths.1, queries).unwrap();
    std::fs::write(&paths.2, qrels).unwrap();
    paths
}

/// (text, doc, grade) of every judgment, in order.
fn judgments(queries: &[JudgedQuery]) -> Vec<(String, String, i32)> {
    queries
        .iter()
        .flat_map(|q| {
            q.judgments
                .iter()
                .map(|(d, g)| (q.text.clone(), d.clone(), *g))
        })
        .collect()
}

fn finish(
    index: &TunableIndex,
    data: &TrainingData,
    options: &FineTuneOptions,
) -> Box<FineTuneReport> {
    match index
        .fine_tune(data, options, &AtomicBool::new(false), &mut |_| {})
        .unwrap()
    {
        FineTuneOutcome::Finished(report) => report,
        other => panic!("not finished: {other:?}"),
    }
}

#[test]
fn simulated_feedback_trains_like_the_qrels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let model = export_tiny_model(root, 11, true).unwrap();
    let (corpus, queries, qrels) = write_collection(root);
    let index_dir = root.join("index");
    let corpus_options = CorpusOptions {
        model: Some(model),
        threads: 1,
        ..CorpusOptions::default()
    };
    index_corpus(&index_dir, &corpus, &corpus_options, |_| {}).unwrap();
    let index = TunableIndex::open_ltre_index(&index_dir).unwrap();

    let from_qrels = TrainingData::from_beir(&queries, &qrels).unwrap();
    let log = log_in(&index_dir);
    let records = records_from_beir(&queries, &qrels, 1_700_000_000).unwrap();
    assert_eq!(records.len(), QUERIES * 4);
    assert!(records.iter().all(|r| matches!(r.signal, Signal::Grade(_))));
    log.append(&records).unwrap();
    let from_feedback = log.to_training_data(&FeedbackPolicy::default()).unwrap();

    // The same judgments, the queries in the same order.
    assert_eq!(
        BTreeSet::from_iter(judgments(from_feedback.queries())),
        BTreeSet::from_iter(judgments(from_qrels.queries()))
    );
    let texts =
        |d: &TrainingData| -> Vec<String> { d.queries().iter().map(|q| q.text.clone()).collect() };
    assert_eq!(texts(&from_feedback), texts(&from_qrels));
    // Deterministic: the same log, the same data and hash; re-importing changes nothing.
    log.append(&records).unwrap();
    assert_eq!(
        log.to_training_data(&FeedbackPolicy::default()).unwrap(),
        from_feedback
    );

    // The same explicit held-out queries (keyed by text for the feedback run) and the same
    // evaluation queries: the same numbers before and after.
    let dev_qrels: Vec<JudgedQuery> = from_qrels.queries()[..6].to_vec();
    let eval: Vec<JudgedQuery> = from_qrels.queries().to_vec();
    let config = TrainConfig {
        epochs: 2,
        batch_size: 4,
        top_n: 20,
        rr_cut: 20,
        checkpoint_every: 1,
        ..Default::default()
    };
    let options = |dev: Vec<JudgedQuery>, run: &str| {
        let mut config = config.clone();
        config.optimizer.lr = 2e-3;
        FineTuneOptions::new(config)
            .threads(1)
            .dev(DevSet::Queries(dev))
            .eval(eval.clone())
            .run_dir(root.join(run))
    };
    let a = finish(
        &index,
        &from_qrels,
        &options(dev_qrels.clone(), "runs/qrels"),
    );
    let b = finish(
        &index,
        &from_feedback,
        &options(keyed_by_text(&dev_qrels), "runs/feedback"),
    );
    assert_eq!((a.train_queries, a.dev_queries), (QUERIES - 6, 6));
    assert_eq!(
        (b.train_queries, b.dev_queries),
        (a.train_queries, a.dev_queries)
    );
    assert_eq!(b.baseline_dev_ndcg10, a.baseline_dev_ndcg10);
    assert_eq!(b.best_dev_ndcg10, a.best_dev_ndcg10);
    assert_eq!(b.best_epoch, a.best_epoch);
    let history = |r: &FineTuneReport| -> Vec<(f32, f64)> {
        r.history.iter().map(|e| (e.loss, e.dev_ndcg10)).collect()
    };
    assert_eq!(history(&b), history(&a));
    assert_eq!(b.eval_before_ndcg10, a.eval_before_ndcg10);
    assert_eq!(b.eval_after_ndcg10, a.eval_after_ndcg10);
    assert!(a.history.iter().all(|e| e.loss.is_finite() && e.loss > 0.0));
    assert_eq!(b.training_data_sha256, from_feedback.sha256());
    eprintln!(
        "held-out nDCG@10 {:.4} -> {:.4}, eval {:.4} -> {:.4} (both runs)",
        a.baseline_dev_ndcg10,
        a.best_dev_ndcg10,
        a.eval_before_ndcg10.unwrap_or(0.0),
        a.eval_after_ndcg10.unwrap_or(0.0)
    );
}
