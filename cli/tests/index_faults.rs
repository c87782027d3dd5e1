//! Fault injection for `ltre-cli index`: SIGKILL at random points (seeded), then the same
//! command to completion; the result must equal an uninterrupted run. Plus the integrity
//! refusals a rerun owes the user: repeated ids, vectors changed since they were recorded,
//! another model, an interrupted creation, `--index` naming a file.
//!
//! `LTRE_FAULT_TRIALS`, `LTRE_FAULT_SEED` and `LTRE_FAULT_DOCS` size the random test
//! (`scripts/fault_index.sh` runs a longer one). Kills land in the short early windows too
//! through the `LTRE_INDEX_PAUSE` hook of `index_corpus` (a sleep at named points).
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ltre_core::testing::export_tiny_model;
use tantivy_ltre::checksum::{document_vectors_sha256, read_all_vectors};
use tantivy_ltre::encoders::EncoderStore;
use tantivy_ltre::{LtreIndex, RetrievalMode, SearchOptions};

use ltre_core::testing::SplitMix64 as Rng;

const WORDS: &[&str] = &[
    "fox", "river", "bread", "stars", "stone", "cloud", "paper", "music", "garden", "engine",
    "winter", "copper", "forest", "signal", "harbor", "candle",
];

struct Fixture {
    root: tempfile::TempDir,
    model: PathBuf,
    corpus: PathBuf,
    ids: Vec<String>,
}

/// A tiny model and a corpus of `docs` short documents, each holding the word `common`.
fn fixture(docs: usize, seed: u64) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let model = export_tiny_model(root.path(), 1, false).unwrap();
    let mut rng = Rng(seed);
    let mut lines = Vec::new();
    let mut ids = Vec::new();
    for i in 0..docs {
        let id = format!("doc{i:04}");
        let words: Vec<&str> = (0..6)
            .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
            .collect();
        let line = serde_json::json!({"_id": id, "title": words[0], "text": format!("common {}", words.join(" "))});
        lines.push(line.to_string());
        ids.push(id);
    }
    let corpus = root.path().join("corpus.jsonl");
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    ids.sort();
    Fixture {
        root,
        model,
        corpus,
        ids,
    }
}

/// The `ltre-cli` built for this test, pinned by a hard link (a copy where linking fails): a
/// shared target directory may get another checkout's build of it while the trials run.
fn ltre_cli() -> &'static Path {
    static PINNED: OnceLock<PathBuf> = OnceLock::new();
    PINNED.get_or_init(|| {
        let built = Path::new(env!("CARGO_BIN_EXE_ltre-cli"));
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Links of earlier test processes (each keeps a whole binary alive).
        for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("index_faults-ltre-cli-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let pinned = tmp.join(format!("index_faults-ltre-cli-{}", std::process::id()));
        let _ = std::fs::remove_file(&pinned);
        if std::fs::hard_link(built, &pinned).is_err() {
            std::fs::copy(built, &pinned).unwrap();
        }
        pinned
    })
}

fn index_command(model: &Path, corpus: &Path, index: &Path) -> Command {
    let mut command = Command::new(ltre_cli());
    command
        .arg("index")
        .arg("--corpus")
        .arg(corpus)
        .arg("--model")
        .arg(model)
        .arg("--index")
        .arg(index)
        .args([
            "--commit-every",
            "10",
            "--batch-size",
            "4",
            "--threads",
            "1",
        ])
        .env("LTRE_LOG", "warn")
        .env_remove("LTRE_INDEX_PAUSE");
    command
}

fn output(mut command: Command) -> Output {
    command.output().unwrap()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a finished index holds: every listing sorted, so repeats show.
#[derive(Debug, PartialEq)]
struct Snapshot {
    dense_ids: Vec<String>,
    bm25_ids: Vec<String>,
    num_docs: u64,
    checksum: String,
    recorded: String,
}

fn snapshot(index: &Path) -> Snapshot {
    let ltre = LtreIndex::open(index).unwrap();
    let searcher = ltre.searcher();
    let dense = ltre.dense_field().unwrap();
    let (dense_ids, _) = read_all_vectors(&searcher, dense, "id").unwrap();
    let options = SearchOptions {
        mode: RetrievalMode::Bm25,
        k: 100_000,
        ..SearchOptions::default()
    };
    let mut bm25_ids: Vec<String> = ltre
        .search_with(&searcher, "common", None, &options)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    bm25_ids.sort();
    Snapshot {
        dense_ids,
        bm25_ids,
        num_docs: searcher.num_docs(),
        checksum: document_vectors_sha256(&searcher, dense, "id").unwrap(),
        recorded: EncoderStore::new(index)
            .record("base")
            .unwrap()
            .document_vectors_sha256,
    }
}

/// Every corpus document exactly once in both listings, the checksum of an uninterrupted run,
/// recorded.
fn assert_complete(got: &Snapshot, fx: &Fixture, baseline: &Snapshot, context: &str) {
    assert_eq!(got.dense_ids, fx.ids, "{context}: dense listing");
    assert_eq!(got.bm25_ids, fx.ids, "{context}: BM25 listing");
    assert_eq!(
        got.num_docs,
        fx.ids.len() as u64,
        "{context}: document count"
    );
    assert_eq!(
        got.checksum, baseline.checksum,
        "{context}: document vectors"
    );
    assert_eq!(got.recorded, got.checksum, "{context}: recorded checksum");
}

/// Where a kill left the directory (for the summary).
fn state(index: &Path) -> String {
    if !index.exists() || std::fs::read_dir(index).map_or(true, |mut d| d.next().is_none()) {
        return "nothing written".into();
    }
    if !index.join("ltre.json").exists() {
        return "creation: Tantivy files only".into();
    }
    if !index.join("encoders/base").is_dir() {
        return "ltre.json, base encoder not installed".into();
    }
    if !index.join("encoders/ACTIVE").exists() {
        return "base encoder installed, not active".into();
    }
    match LtreIndex::open(index) {
        Ok(ltre) if ltre.searcher().num_docs() == 0 => "encoder active, no commit".into(),
        Ok(_) => "documents committed".into(),
        Err(_) => "not openable".into(),
    }
}

/// The names under `dir` (two levels), for failure messages.
fn listing(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        for sub in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            names.push(format!("{name}/{}", sub.file_name().to_string_lossy()));
        }
        names.push(name);
    }
    names.sort();
    names
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn killed_index_runs_resume_to_the_uninterrupted_result() {
    let trials = env_or("LTRE_FAULT_TRIALS", 20);
    let seed = env_or("LTRE_FAULT_SEED", 7);
    let docs = env_or("LTRE_FAULT_DOCS", 120) as usize;
    let fx = fixture(docs, seed);
    let baseline_dir = fx.root.path().join("baseline");
    let started = Instant::now();
    let out = output(index_command(&fx.model, &fx.corpus, &baseline_dir));
    let full_run = started.elapsed();
    assert_ok(&out, "uninterrupted index");
    let baseline = snapshot(&baseline_dir);
    assert_complete(&baseline, &fx, &baseline, "uninterrupted run");

    // Pauses widen the windows that are otherwise too short to hit: between Tantivy's files
    // and ltre.json, before the encoder copy, before the first commit; a kill is sent a random
    // time after the file that opens the window appears. Without a pause: a random delay.
    let pauses = [
        ("", ""),
        ("tantivy-created=300", "meta.json"),
        ("installing=300", "ltre.json"),
        ("created=300", "encoders/ACTIVE"),
        ("committed=30", ""),
    ];
    let mut rng = Rng(seed ^ 0xFA17);
    let mut states: std::collections::BTreeMap<String, usize> = Default::default();
    for trial in 0..trials {
        let index = fx.root.path().join(format!("trial-{trial}"));
        let kills = 1 + rng.below(2);
        let mut history = Vec::new();
        for _ in 0..kills {
            let (pause, opens) = pauses[rng.below(pauses.len() as u64) as usize];
            let mut command = index_command(&fx.model, &fx.corpus, &index);
            command
                .env("LTRE_INDEX_PAUSE", pause)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = command.spawn().unwrap();
            if opens.is_empty() {
                let window = full_run.as_millis() as u64 + 100;
                std::thread::sleep(Duration::from_millis(rng.below(window)));
            } else {
                // Polls for the window (bounded: the run may be past it already).
                let polled = Instant::now();
                while !index.join(opens).exists() && polled.elapsed() < full_run * 3 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(rng.below(150)));
            }
            // SIGKILL on Unix; the run may already have finished.
            let _ = child.kill();
            let _ = child.wait();
            *states.entry(state(&index)).or_default() += 1;
            history.push(format!("kill with pause {pause:?}: {:?}", listing(&index)));
        }
        let left = listing(&index);
        let out = output(index_command(&fx.model, &fx.corpus, &index));
        assert_ok(
            &out,
            &format!("trial {trial} (seed {seed}): rerun over {left:?}"),
        );
        assert_complete(
            &snapshot(&index),
            &fx,
            &baseline,
            &format!("trial {trial} (seed {seed})"),
        );
        let _ = std::fs::remove_dir_all(&index);
    }
    eprintln!("{trials} trials, seed {seed}, {docs} docs; states after a kill: {states:?}");
}

#[test]
fn repeated_ids_are_indexed_once_and_reported() {
    let fx = fixture(30, 3);
    let mut text = std::fs::read_to_string(&fx.corpus).unwrap();
    // Line 31 repeats doc0002 (line 3) with other text; line 32 repeats it again.
    for body in ["common other text", "common yet another"] {
        text.push_str(
            &serde_json::json!({"_id": "doc0002", "title": "again", "text": body}).to_string(),
        );
        text.push('\n');
    }
    std::fs::write(&fx.corpus, text).unwrap();
    let index = fx.root.path().join("index");
    for run in ["first run", "rerun"] {
        let out = output(index_command(&fx.model, &fx.corpus, &index));
        assert_ok(&out, run);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("`doc0002` at line 31 (first at line 3)"),
            "{run}: {stderr}"
        );
        let got = snapshot(&index);
        assert_eq!(got.dense_ids, fx.ids, "{run}");
        assert_eq!(got.bm25_ids, fx.ids, "{run}");
    }
}

/// Flips a byte of the first vector of every `.ltrevec` component (the rows follow a 32-byte
/// header and the presence bitmap).
fn damage_vectors(index: &Path) {
    for entry in std::fs::read_dir(index).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ltrevec") {
            let mut bytes = std::fs::read(&path).unwrap();
            let max_doc = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
            let row = 32 + 8 * max_doc.div_ceil(64);
            bytes[row + 1] ^= 0x40;
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

#[test]
fn changed_vectors_are_refused_and_the_recorded_checksum_kept() {
    let fx = fixture(30, 4);
    let index = fx.root.path().join("index");
    assert_ok(
        &output(index_command(&fx.model, &fx.corpus, &index)),
        "index",
    );
    let record = index.join("encoders/base/encoder.json");
    let before = std::fs::read(&record).unwrap();
    damage_vectors(&index);
    // A rerun that adds nothing, then one that would extend the index.
    let mut longer = std::fs::read_to_string(&fx.corpus).unwrap();
    longer.push_str(r#"{"_id": "extra", "title": "t", "text": "common extra"}"#);
    longer.push('\n');
    let longer_corpus = fx.root.path().join("longer.jsonl");
    std::fs::write(&longer_corpus, longer).unwrap();
    for corpus in [&fx.corpus, &longer_corpus] {
        let out = output(index_command(&fx.model, corpus, &index));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a damaged index was accepted");
        assert!(
            stderr.contains("document vectors changed since they were recorded"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&record).unwrap(), before, "record rewritten");
    }
    assert_eq!(
        snapshot(&index).num_docs,
        30,
        "documents added to a damaged index"
    );
}

#[test]
fn resuming_with_another_model_is_refused() {
    let fx = fixture(30, 5);
    let other = export_tiny_model(&fx.root.path().join("other"), 2, false).unwrap();
    let index = fx.root.path().join("index");
    let text = std::fs::read_to_string(&fx.corpus).unwrap();
    let half: Vec<&str> = text.lines().take(15).collect();
    let half_corpus = fx.root.path().join("half.jsonl");
    std::fs::write(&half_corpus, half.join("\n") + "\n").unwrap();
    assert_ok(
        &output(index_command(&fx.model, &half_corpus, &index)),
        "half",
    );
    let out = output(index_command(&other, &fx.corpus, &index));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "another model was accepted");
    assert!(stderr.contains("embedded by another model"), "{stderr}");
    assert_eq!(snapshot(&index).num_docs, 15);
    // The same model resumes.
    assert_ok(
        &output(index_command(&fx.model, &fx.corpus, &index)),
        "resume",
    );
    assert_eq!(snapshot(&index).dense_ids, fx.ids);
}

#[test]
fn an_interrupted_creation_is_finished_by_the_same_command() {
    let fx = fixture(20, 6);
    let index = fx.root.path().join("index");
    // What a kill between Tantivy's meta.json and ltre.json leaves: an empty Tantivy index.
    let mut schema = tantivy::schema::Schema::builder();
    schema.add_text_field("id", tantivy::schema::STRING);
    std::fs::create_dir_all(&index).unwrap();
    tantivy::Index::create_in_dir(&index, schema.build()).unwrap();
    let out = output(index_command(&fx.model, &fx.corpus, &index));
    assert_ok(&out, "index over an interrupted creation");
    assert_eq!(snapshot(&index).dense_ids, fx.ids);
    // A kill during Tantivy's first atomic write leaves only its temporary file.
    let first_write = fx.root.path().join("first-write");
    std::fs::create_dir_all(&first_write).unwrap();
    std::fs::write(first_write.join(".tmpQw3rTy"), b"[").unwrap();
    let out = output(index_command(&fx.model, &fx.corpus, &first_write));
    assert_ok(&out, "index over a killed first write");
    assert_eq!(snapshot(&first_write).dense_ids, fx.ids);
    // A directory with anything else in it is left alone.
    let other = fx.root.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    tantivy::Index::create_in_dir(&other, tantivy::schema::Schema::builder().build()).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let out = output(index_command(&fx.model, &fx.corpus, &other));
    assert!(!out.status.success());
    assert!(other.join("notes.txt").exists() && other.join("meta.json").exists());
}

#[test]
fn a_killed_encoder_copy_is_finished_by_the_same_command() {
    let fx = fixture(20, 10);
    let index = fx.root.path().join("index");
    // Killed before the copy (paused there), then a half-copied staging directory of a
    // process that no longer runs, as a kill during the copy leaves it.
    let mut command = index_command(&fx.model, &fx.corpus, &index);
    command
        .env("LTRE_INDEX_PAUSE", "installing=60000")
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    while !index.join("ltre.json").exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let staging = index.join("encoders/.base.tmp-3999999-1-0");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("model.onnx"), b"half a model").unwrap();
    assert!(!index.join("encoders/base").exists());
    let out = output(index_command(&fx.model, &fx.corpus, &index));
    assert_ok(&out, "rerun");
    assert_eq!(snapshot(&index).dense_ids, fx.ids);
    assert!(!staging.exists(), "staging left behind");
}

#[test]
fn index_naming_a_file_is_explained() {
    let fx = fixture(5, 8);
    let file = fx.root.path().join("plain-file");
    std::fs::write(&file, "not an index").unwrap();
    let out = output(index_command(&fx.model, &fx.corpus, &file));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not an index");
}

#[test]
fn eval_reports_qrels_that_match_nothing() {
    let fx = fixture(10, 9);
    let index = fx.root.path().join("index");
    assert_ok(
        &output(index_command(&fx.model, &fx.corpus, &index)),
        "index",
    );
    let queries = fx.root.path().join("queries.jsonl");
    std::fs::write(
        &queries,
        r#"{"_id": "q1", "text": "common fox"}"#.to_string() + "\n",
    )
    .unwrap();
    let qrels = fx.root.path().join("qrels.tsv");
    std::fs::write(
        &qrels,
        "query-id\tcorpus-id\tscore\nq1\tdoc0001\t1\nq1\tghost-doc\t1\nq9\tdoc0002\t1\n",
    )
    .unwrap();
    let out = Command::new(ltre_cli())
        .arg("eval")
        .arg("--index")
        .arg(&index)
        .args(["--mode", "bm25", "--json", "--queries"])
        .arg(&queries)
        .arg("--qrels")
        .arg(&qrels)
        .env("LTRE_LOG", "warn")
        .output()
        .unwrap();
    assert_ok(&out, "eval");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("q9") && stderr.contains("ghost-doc"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["missing_queries"], 1);
    assert_eq!(json["missing_documents"], 1);
}
