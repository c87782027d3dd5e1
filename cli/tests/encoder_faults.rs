//! The encoder registry under concurrent `ltre-cli encoder` processes and under `kill -9`:
//!
//! - `concurrent_switches_keep_the_registry_consistent`: 8 workers each run 15
//!   `ltre-cli encoder activate|rollback` processes (8 at a time) while the test thread
//!   searches through an [`LtreIndex`] and reads `active_id()`: no search, read or command
//!   fails, and at the end ACTIVE is HISTORY's last id, every logged id exists and every
//!   logged rollback returned to the encoder before the one it left.
//! - `killed_switches_resume`: seeded trials SIGKILL an `activate` or `rollback` either after a
//!   random delay or inside the commit window (HISTORY written, ACTIVE not yet; widened with
//!   `LTRE_FAULT_DELAY_MS`); after each, the index opens, `active_id()` works, and rerunning the
//!   same command succeeds and leaves the registry consistent (repairing ACTIVE if the kill
//!   left it behind HISTORY). `LTRE_FAULT_TRIALS` / `LTRE_FAULT_SEED` scale it up
//!   (`scripts/fault_encoder.sh`).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ltre_core::testing::export_tiny_model;
use tantivy_ltre::corpus::{index_corpus, CorpusOptions};
use tantivy_ltre::encoders::{EncoderRecord, EncoderStore, HistoryEntry, BASE_ENCODER};
use tantivy_ltre::{LtreIndex, RetrievalMode, SearchOptions};

const CORPUS: &[(&str, &str)] = &[
    ("d1", "the quick brown fox jumps over the lazy dog"),
    ("d2", "a cat sleeps all day"),
    ("d3", "water flows down the river to the sea"),
    ("d4", "a fox digs a den under the tree"),
];
/// The encoders of the fixture: `base` and two installed versions.
const IDS: [&str; 3] = [BASE_ENCODER, "ltre-0001", "ltre-0002"];

use ltre_core::testing::SplitMix64 as Rng;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny dense index with `base` active, `ltre-0001` and `ltre-0002` installed, and
/// `depth` alternating activations logged, so that rollbacks have somewhere to go.
fn fixture(root: &Path, depth: usize) -> PathBuf {
    let model = export_tiny_model(root, 1, false).unwrap();
    let other = export_tiny_model(root, 2, false).unwrap();
    let corpus = root.join("corpus.jsonl");
    let lines: Vec<String> = CORPUS
        .iter()
        .map(|(id, text)| serde_json::json!({"_id": id, "title": "", "text": text}).to_string())
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let dir = root.join("index");
    let options = CorpusOptions {
        model: Some(model.clone()),
        threads: 1,
        ..CorpusOptions::default()
    };
    index_corpus(&dir, &corpus, &options, |_| {}).unwrap();
    let store = EncoderStore::new(&dir);
    for (id, from) in [("ltre-0001", &other), ("ltre-0002", &model)] {
        assert_eq!(
            store
                .install_version(from, EncoderRecord::new("tiny"))
                .unwrap(),
            id
        );
    }
    for i in 0..depth {
        store.activate(IDS[1 + i % 2]).unwrap();
    }
    dir
}

fn cli(index: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ltre-cli"));
    command
        .arg("encoder")
        .args(args)
        .arg("--index")
        .arg(index)
        .env("LTRE_LOG", "warn")
        .env_remove("LTRE_FAULT_DELAY_MS");
    command
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "ltre-cli encoder {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks the registry: ACTIVE names HISTORY's last id, every logged id is installed, and
/// the log replays: each rollback returned to the encoder below the one it left.
fn assert_consistent(index: &Path) {
    let store = EncoderStore::new(index);
    let history = store.history().unwrap();
    let active = store.active_id().unwrap();
    let last = history.last().map(|e| e.id.clone());
    assert_eq!(
        Some(&active),
        last.as_ref(),
        "ACTIVE disagrees with HISTORY's last entry"
    );
    let installed = store.list().unwrap();
    assert!(
        history.iter().all(|e| installed.contains(&e.id)),
        "HISTORY names an encoder that is not installed"
    );
    replay(&history);
}

/// The activation stack after `history`, asserting that every rollback is a pop.
fn replay(history: &[HistoryEntry]) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    for (i, entry) in history.iter().enumerate() {
        if entry.action == "rollback" {
            stack.pop();
            assert_eq!(
                stack.last(),
                Some(&entry.id),
                "HISTORY line {}: a rollback to `{}` that is not the previous encoder ({:?})",
                i + 1,
                entry.id,
                &stack[stack.len().saturating_sub(3)..]
            );
        } else {
            stack.push(entry.id.clone());
        }
    }
    stack
}

/// Temporary files left by killed writers next to ACTIVE or HISTORY.
fn leftovers(index: &Path) -> Vec<String> {
    std::fs::read_dir(index.join("encoders"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            (name.starts_with(".ACTIVE.") || name.starts_with(".HISTORY.")).then_some(name)
        })
        .collect()
}

#[test]
fn concurrent_switches_keep_the_registry_consistent() {
    const WORKERS: u64 = 8;
    const OPS: u64 = 15;
    let root = tempfile::tempdir().unwrap();
    // Deeper than the number of rollbacks: none can legitimately run out of history.
    let index = fixture(root.path(), (WORKERS * OPS) as usize + 2);
    let searcher = LtreIndex::open(&index).unwrap();
    let store = EncoderStore::new(&index);
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let index = index.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0xC0FFEE + w);
                let mut failures = Vec::new();
                for _ in 0..OPS {
                    let args: Vec<&str> = if rng.below(2) == 0 {
                        vec!["rollback"]
                    } else {
                        vec!["activate", IDS[rng.below(3) as usize]]
                    };
                    let out = cli(&index, &args).output().unwrap();
                    if !out.status.success() {
                        failures.push(describe(&args, &out));
                    }
                }
                failures
            })
        })
        .collect();
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !workers.iter().all(|w| w.is_finished()) {
                std::thread::sleep(Duration::from_millis(10));
            }
            done.store(true, Ordering::Relaxed);
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    let dense = SearchOptions {
        mode: RetrievalMode::Dense,
        k: 3,
        ..SearchOptions::default()
    };
    let (mut searches, mut failed_searches, mut failed_reads) = (0, Vec::new(), Vec::new());
    while !done.load(Ordering::Relaxed) {
        searches += 1;
        match searcher.search("fox", &dense) {
            Ok(hits) if hits.len() == 3 => {}
            Ok(hits) => failed_searches.push(format!("{} hits", hits.len())),
            Err(e) => failed_searches.push(e.to_string()),
        }
        match store.active_id() {
            Ok(id) if IDS.contains(&id.as_str()) => {}
            Ok(id) => failed_reads.push(format!("active id `{id}`")),
            Err(e) => failed_reads.push(e.to_string()),
        }
    }
    let failed_commands = watcher.join().unwrap();
    eprintln!(
        "{searches} searches, {} failed; {} failed reads; {} of {} commands failed",
        failed_searches.len(),
        failed_reads.len(),
        failed_commands.len(),
        WORKERS * OPS
    );
    assert!(searches > 0);
    assert!(failed_searches.is_empty(), "{failed_searches:?}");
    assert!(failed_reads.is_empty(), "{failed_reads:?}");
    assert!(failed_commands.is_empty(), "{failed_commands:#?}");
    assert_consistent(&index);
    assert!(leftovers(&index).is_empty(), "{:?}", leftovers(&index));
}

/// Waits until `path`'s contents differ from `before` (or the child exits), polling.
fn wait_for_change(path: &Path, before: &[u8], child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::fs::read(path).unwrap_or_default() != before {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn killed_switches_resume() {
    let trials = env_u64("LTRE_FAULT_TRIALS", 24);
    let seed = env_u64("LTRE_FAULT_SEED", 7);
    let root = tempfile::tempdir().unwrap();
    // Every trial may roll back twice (the killed command and its rerun).
    let index = fixture(root.path(), 2 * trials as usize + 2);
    let store = EncoderStore::new(&index);
    let history_file = index.join("encoders").join("HISTORY");
    let mut rng = Rng(seed);
    let (mut in_window, mut repaired) = (0, 0);
    for trial in 0..trials {
        let active = store.active_id().unwrap();
        let args: Vec<&str> = if rng.below(2) == 0 {
            vec!["rollback"]
        } else {
            let others: Vec<&str> = IDS.iter().copied().filter(|id| *id != active).collect();
            vec!["activate", others[rng.below(2) as usize]]
        };
        // Odd trials kill inside the commit window, even ones after a random delay.
        let window = trial % 2 == 1;
        let before = std::fs::read(&history_file).unwrap();
        let mut child = cli(&index, &args)
            .env("LTRE_FAULT_DELAY_MS", if window { "5000" } else { "20" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if window {
            assert!(
                wait_for_change(&history_file, &before, &mut child),
                "trial {trial} ({args:?}): HISTORY never changed"
            );
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(60)));
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();

        // Whatever the kill interrupted, the index opens and has an active encoder.
        let opened = LtreIndex::open(&index)
            .unwrap_or_else(|e| panic!("trial {trial} ({args:?}): index does not open: {e}"));
        drop(opened);
        let after_kill = store.active_id().unwrap();
        let history = store.history().unwrap();
        let last = history.last().map(|e| e.id.clone()).unwrap();
        if window {
            in_window += 1;
            // Killed after the commit: HISTORY names the new encoder, ACTIVE the old one.
            assert_ne!(last, active, "trial {trial}: {args:?} was not logged");
        }
        let behind = after_kill != last;
        if behind {
            repaired += 1;
            // `list` stays read-only but reports the interrupted switch.
            let out = cli(&index, &["list"]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.contains("interrupted switch"),
                "{stderr}"
            );
        }

        // The same command again succeeds and leaves everything consistent.
        let out = cli(&index, &args).output().unwrap();
        assert!(
            out.status.success(),
            "trial {trial}: {}",
            describe(&args, &out)
        );
        assert_consistent(&index);
        if args[0] == "activate" {
            assert_eq!(store.active_id().unwrap(), args[1], "trial {trial}");
        }
        if behind {
            // The rerun completed the interrupted switch before its own: the logged id is
            // the encoder the rerun started from.
            let history = store.history().unwrap();
            assert!(history.iter().rev().take(2).any(|e| e.id == last));
        }
        assert!(
            leftovers(&index).is_empty(),
            "trial {trial}: {:?}",
            leftovers(&index)
        );
    }
    eprintln!(
        "{trials} trials (seed {seed}): {in_window} killed in the commit window, {repaired} left ACTIVE behind HISTORY and were repaired"
    );
}
