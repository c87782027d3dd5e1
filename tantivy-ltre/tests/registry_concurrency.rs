//! The encoder registry through the library: threads switching encoders at once, the repair
//! of a switch killed between its HISTORY commit and its ACTIVE write, a missing ACTIVE, and
//! the HISTORY bound. Encoders are empty directories (switching never loads them).
use std::path::Path;
use std::sync::Arc;

use tantivy_ltre::encoders::{EncoderRecord, EncoderStore, ACTIVE_FILE, ENCODERS_DIR};
use tantivy_ltre::registry_log::{HISTORY_KEEP, HISTORY_LIMIT};

const IDS: [&str; 3] = ["base", "ltre-0001", "ltre-0002"];

fn store_with(root: &Path, depth: usize) -> EncoderStore {
    let store = EncoderStore::new(root);
    for id in IDS {
        std::fs::create_dir_all(store.encoder_dir(id).unwrap()).unwrap();
    }
    store.activate("base").unwrap();
    for i in 0..depth {
        store.activate(IDS[1 + i % 2]).unwrap();
    }
    store
}

/// ACTIVE is HISTORY's last id and every rollback in HISTORY popped one step.
fn assert_consistent(store: &EncoderStore) {
    let history = store.history().unwrap();
    assert_eq!(
        Some(store.active_id().unwrap()),
        history.last().map(|e| e.id.clone())
    );
    let mut stack: Vec<&str> = Vec::new();
    for (i, entry) in history.iter().enumerate() {
        if entry.action == "rollback" {
            stack.pop();
            assert_eq!(
                stack.last(),
                Some(&entry.id.as_str()),
                "HISTORY line {}: a rollback that is not a pop",
                i + 1
            );
        } else {
            stack.push(&entry.id);
        }
    }
}

#[test]
fn threads_switching_at_once_keep_the_registry_consistent() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(store_with(root.path(), 100));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    // Every thread pushes before it pops: no rollback can run out of history.
                    store.activate(IDS[(t + i) % 3]).unwrap();
                    store.rollback().unwrap();
                    assert!(IDS.contains(&store.active_id().unwrap().as_str()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_consistent(&store);
}

#[test]
fn a_switch_killed_before_its_active_write_is_repaired() {
    let root = tempfile::tempdir().unwrap();
    let store = store_with(root.path(), 1);
    assert_eq!(store.active_id().unwrap(), "ltre-0001");
    // What a kill between the HISTORY commit and the ACTIVE write leaves.
    let active = root.path().join(ENCODERS_DIR).join(ACTIVE_FILE);
    std::fs::write(&active, "base\n").unwrap();
    assert_eq!(store.active_id().unwrap(), "base");
    assert!(store.repair().unwrap());
    assert!(!store.repair().unwrap());
    assert_eq!(store.active_id().unwrap(), "ltre-0001");
    // The rollback after a repair goes to the encoder before the committed one.
    std::fs::write(&active, "base\n").unwrap();
    assert_eq!(store.rollback().unwrap(), "base");
    assert_consistent(&store);

    // A kill during the first activation of an index: HISTORY without ACTIVE.
    std::fs::remove_file(&active).unwrap();
    assert_eq!(store.active_id().unwrap(), "base");
    store.activate("ltre-0002").unwrap();
    assert_consistent(&store);
}

#[test]
fn history_is_bounded_and_rollback_still_works() {
    let root = tempfile::tempdir().unwrap();
    let store = store_with(root.path(), HISTORY_LIMIT + 5);
    let history = store.history().unwrap();
    assert!(history.len() <= HISTORY_LIMIT, "{}", history.len());
    assert!(history.len() >= HISTORY_KEEP);
    assert_consistent(&store);
    // The rollback stack alternates ltre-0002 / ltre-0001 (`base` was compacted away).
    let mut expected = store.active_id().unwrap();
    // Rolling back all the way also crosses another compaction (rollbacks are logged too).
    for _ in 0..history.len() - 1 {
        expected = if expected == "ltre-0001" {
            "ltre-0002".into()
        } else {
            "ltre-0001".into()
        };
        assert_eq!(store.rollback().unwrap(), expected);
    }
    assert!(store.rollback().is_err());
    assert_consistent(&store);
    // Version ids stay unique after a deleted version leaves HISTORY.
    let model = root.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("manifest.json"), "{}").unwrap();
    let id = store
        .install_version(&model, EncoderRecord::new("x"))
        .unwrap();
    assert_eq!(id, "ltre-0003");
    std::fs::remove_dir_all(store.encoder_dir(&id).unwrap()).unwrap();
    let next = store
        .install_version(&model, EncoderRecord::new("x"))
        .unwrap();
    assert_eq!(next, "ltre-0004");
}
