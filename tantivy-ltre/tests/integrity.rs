//! Damaged dense segment files: refused on open when the cheap check sees the damage, always
//! reported by `verify_index`, never a silent wrong result (fewer documents, NaN scores).
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tantivy::collector::TopDocs;
use tantivy::directory::{Directory, TerminatingWrite};
use tantivy::indexer::NoMergePolicy;
use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED};
use tantivy::{Index, IndexWriter, TantivyDocument, Term};
use tantivy_ltre::verify::{verify_dir, FileStatus, VerifyReport};
use tantivy_ltre::{
    add_dense_field, AnnOptions, DenseField, DenseFieldOptions, DenseIndexWriter, DenseQuery,
};

const DIM: usize = 8;
const SEGMENTS: u64 = 3;
/// More than 64 documents per segment: the presence bitmap spans two words.
const PER_SEGMENT: u64 = 70;
const HEADER: usize = 32;
const TRAILER: usize = 32;
const FIELD: &str = "embedding";

fn vector(id: u64) -> Vec<f32> {
    (0..DIM)
        .map(|i| ((id * 31 + i as u64 * 7) % 13) as f32 / 13.0 - 0.4)
        .collect()
}

/// A 3-segment index in `dir`; every 5th document has no vector.
fn build(dir: &Path, ann: Option<AnnOptions>) -> (Index, Field) {
    let mut builder = Schema::builder();
    let id = builder.add_u64_field("id", INDEXED | STORED | FAST);
    let mut options = DenseFieldOptions::new(DIM);
    options.ann = ann;
    add_dense_field(&mut builder, FIELD, &options);
    let schema = builder.build();
    let dense = DenseField::from_schema(&schema).unwrap();
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_dir(dir)
        .unwrap();
    let w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    w.set_merge_policy(Box::new(NoMergePolicy));
    let mut w = DenseIndexWriter::new(w, dense);
    for segment in 0..SEGMENTS {
        for n in 0..PER_SEGMENT {
            let doc_id = segment * PER_SEGMENT + n;
            let mut doc = TantivyDocument::new();
            doc.add_u64(id, doc_id);
            let v = vector(doc_id);
            w.add_document(doc, (!n.is_multiple_of(5)).then_some(v.as_slice()))
                .unwrap();
        }
        w.commit().unwrap();
    }
    (index, id)
}

fn open(dir: &Path) -> (Index, DenseField) {
    let mut index = Index::open_in_dir(dir).unwrap();
    let dense = DenseField::register(&mut index).unwrap();
    (index, dense)
}

/// Every dense hit of a fresh reader (k larger than the index).
fn search(dir: &Path) -> tantivy::Result<Vec<f32>> {
    let (index, dense) = open(dir);
    let searcher = index.reader()?.searcher();
    let query = DenseQuery::new(&dense, vector(1), 1000).unwrap();
    let hits = searcher.search(&query, &TopDocs::with_limit(1000).order_by_score())?;
    Ok(hits.into_iter().map(|(score, _)| score).collect())
}

fn segment_ids(dir: &Path) -> Vec<String> {
    let (index, _) = open(dir);
    let mut ids: Vec<String> = index
        .searchable_segment_ids()
        .unwrap()
        .iter()
        .map(|id| id.uuid_string())
        .collect();
    ids.sort();
    ids
}

fn file(dir: &Path, segment: &str, ext: &str) -> PathBuf {
    dir.join(format!("{segment}.{ext}"))
}

fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

/// Rewrites a component's body through Tantivy, with a valid footer (damage that Tantivy's
/// footer cannot see).
fn rewrite_body(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let (index, _) = open(dir);
    let directory = index.directory();
    let path = Path::new(name);
    let mut body = directory
        .open_read(path)
        .unwrap()
        .read_bytes()
        .unwrap()
        .as_slice()
        .to_vec();
    edit(&mut body);
    directory.delete(path).unwrap();
    let mut out = directory.open_write(path).unwrap();
    out.write_all(&body).unwrap();
    out.terminate().unwrap();
}

/// The damaged files of a report: (segment, field, file, problems).
fn damaged(report: &VerifyReport) -> Vec<(String, Option<String>, String, String)> {
    report
        .damaged()
        .map(|(segment, file)| {
            let FileStatus::Damaged(problems) = &file.status else {
                unreachable!()
            };
            (
                segment.segment.clone(),
                file.field.clone(),
                file.file.clone(),
                problems.join("; "),
            )
        })
        .collect()
}

fn expected_hits() -> usize {
    (SEGMENTS * PER_SEGMENT - SEGMENTS * PER_SEGMENT / 5) as usize
}

/// The error names the segment, the file, the field and the remedy, without Tantivy's
/// misleading footer advice.
fn assert_clear(message: &str, segment: &str, ext: &str) {
    let short = &segment[..8];
    assert!(message.contains(short), "{message}");
    assert!(message.contains(&format!("{segment}.{ext}")), "{message}");
    assert!(message.contains(&format!("`{FIELD}`")), "{message}");
    assert!(message.contains("ltre-cli verify --index"), "{message}");
    assert!(message.contains("re-index"), "{message}");
    assert!(!message.contains("0.15"), "{message}");
}

#[test]
fn clean_index_verifies_ok() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.dense_field.as_deref(), Some(FIELD));
    assert_eq!(report.segments.len(), SEGMENTS as usize);
    for segment in &report.segments {
        assert_eq!(segment.max_doc, PER_SEGMENT as u32);
        assert!(segment.tantivy_files_checked > 0);
        assert_eq!(segment.files.len(), 2, "{segment:?}");
        assert!(segment.files.iter().all(|f| f.status == FileStatus::Ok));
    }
    assert_eq!(search(dir.path()).unwrap().len(), expected_hits());
}

#[test]
fn payload_byte_flip_is_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let segment = &segment_ids(dir.path())[1];
    // A byte of doc 3's row: the cheap check does not read rows.
    flip(
        &file(dir.path(), segment, "ltrevec"),
        HEADER + 16 + 3 * DIM * 4 + 1,
    );
    let scores = search(dir.path()).unwrap();
    assert!(scores.iter().all(|s| s.is_finite()));
    let report = verify_dir(dir.path()).unwrap();
    let damaged = damaged(&report);
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    let (seg, field, name, problems) = &damaged[0];
    assert_eq!(seg, segment);
    assert_eq!(field.as_deref(), Some(FIELD));
    assert_eq!(name, &format!("{segment}.ltrevec"));
    assert!(problems.contains("payload checksum mismatch"), "{problems}");
}

#[test]
fn bitmap_flip_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let segment = &segment_ids(dir.path())[0];
    // Doc 5 (no vector) gains one: the bitmap no longer matches num_present.
    let path = file(dir.path(), segment, "ltrevec");
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER] ^= 1 << 5;
    fs::write(&path, bytes).unwrap();
    let message = search(dir.path()).unwrap_err().to_string();
    assert_clear(&message, segment, "ltrevec");
    assert!(message.contains("bitmap"), "{message}");
    assert_eq!(damaged(&verify_dir(dir.path()).unwrap()).len(), 1);
}

#[test]
fn header_byte_flip_fails_search_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let segment = &segment_ids(dir.path())[2];
    let path = file(dir.path(), segment, "ltrevec");
    let original = fs::read(&path).unwrap();
    for at in 0..HEADER {
        flip(&path, at);
        let message = search(dir.path())
            .err()
            .unwrap_or_else(|| panic!("header byte {at} flipped: search succeeded"))
            .to_string();
        assert_clear(&message, segment, "ltrevec");
        let report = verify_dir(dir.path()).unwrap();
        let damaged = damaged(&report);
        assert_eq!(damaged.len(), 1, "byte {at}: {damaged:?}");
        assert_eq!(&damaged[0].0, segment);
        fs::write(&path, &original).unwrap();
    }
    assert!(verify_dir(dir.path()).unwrap().is_ok());
}

#[test]
fn truncated_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let segment = &segment_ids(dir.path())[0];
    let path = file(dir.path(), segment, "ltrevec");
    let original = fs::read(&path).unwrap();
    // Cut anywhere: Tantivy's footer is lost.
    for keep in [0, 3, 20, HEADER + 5, original.len() / 2, original.len() - 1] {
        fs::write(&path, &original[..keep]).unwrap();
        let message = search(dir.path()).unwrap_err().to_string();
        assert_clear(&message, segment, "ltrevec");
        assert!(message.contains("truncated"), "{message}");
        let damaged = damaged(&verify_dir(dir.path()).unwrap());
        assert_eq!(damaged.len(), 1, "{damaged:?}");
        assert!(damaged[0].3.contains("truncated"), "{damaged:?}");
    }
    fs::write(&path, &original).unwrap();
    // Cut inside the body with a valid footer: the length check sees it.
    rewrite_body(dir.path(), &format!("{segment}.ltrevec"), |body| {
        body.truncate(body.len() - TRAILER - 4)
    });
    let message = search(dir.path()).unwrap_err().to_string();
    assert_clear(&message, segment, "ltrevec");
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn non_finite_rows_never_score_and_verify_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let segment = &segment_ids(dir.path())[0];
    // Docs 1 and 2 (both with a vector): NaN and +inf components.
    rewrite_body(dir.path(), &format!("{segment}.ltrevec"), |body| {
        let row = |doc: usize| HEADER + 16 + doc * DIM * 4;
        body[row(1)..row(1) + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        body[row(2) + 4..row(2) + 8].copy_from_slice(&f32::INFINITY.to_le_bytes());
    });
    let scores = search(dir.path()).unwrap();
    assert!(scores.iter().all(|s| s.is_finite()), "{scores:?}");
    // The +inf row saturates to the top; the NaN row scores f32::MIN, which TopDocs' pruning
    // threshold (strictly above f32::MIN) may drop: hence the full check below.
    assert_eq!(scores[0], f32::MAX);
    assert!(scores.len() + 1 >= expected_hits(), "{}", scores.len());
    let damaged = damaged(&verify_dir(dir.path()).unwrap());
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(&damaged[0].0, segment);
    assert!(
        damaged[0].3.contains("payload checksum mismatch"),
        "{damaged:?}"
    );
    assert!(damaged[0].3.contains("NaN or infinite"), "{damaged:?}");
    assert!(damaged[0].3.contains("docs 1, 2"), "{damaged:?}");
}

fn merge_all(dir: &Path, id: Option<Field>) -> tantivy::Result<()> {
    let (index, _) = open(dir);
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000)?;
    w.set_merge_policy(Box::new(NoMergePolicy));
    if let Some(id) = id {
        for doc in (0..SEGMENTS * PER_SEGMENT).step_by(9) {
            w.delete_term(Term::from_field_u64(id, doc));
        }
        w.commit()?;
    }
    let segments = index.searchable_segment_ids()?;
    w.merge(&segments).wait()?;
    w.garbage_collect_files().wait()?;
    Ok(())
}

#[test]
fn merged_segments_verify_ok() {
    let dir = tempfile::tempdir().unwrap();
    let (_, id) = build(dir.path(), None);
    merge_all(dir.path(), Some(id)).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.segments.len(), 1);
    assert!(report.is_ok(), "{report:?}");
    let deleted_with_vector = (0..SEGMENTS * PER_SEGMENT)
        .step_by(9)
        .filter(|d| !(d % PER_SEGMENT).is_multiple_of(5))
        .count();
    assert_eq!(
        search(dir.path()).unwrap().len(),
        expected_hits() - deleted_with_vector
    );
}

#[test]
fn merge_refuses_to_copy_damaged_rows() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let segment = &segment_ids(dir.path())[1];
    flip(
        &file(dir.path(), segment, "ltrevec"),
        HEADER + 16 + 7 * DIM * 4,
    );
    let message = merge_all(dir.path(), None).unwrap_err().to_string();
    assert!(message.contains("merge refused"), "{message}");
    assert_clear(&message, segment, "ltrevec");
    // The damage is still visible (not laundered into a freshly checksummed segment).
    assert_eq!(segment_ids(dir.path()).len(), SEGMENTS as usize);
    assert_eq!(damaged(&verify_dir(dir.path()).unwrap()).len(), 1);
}

#[test]
fn version_1_files_stay_readable_and_verify_notes_them() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let before = search(dir.path()).unwrap();
    for segment in segment_ids(dir.path()) {
        // The previous layout: version 1, 8 reserved zero bytes, no trailer.
        rewrite_body(dir.path(), &format!("{segment}.ltrevec"), |body| {
            body[8..12].copy_from_slice(&1u32.to_le_bytes());
            body[24..32].fill(0);
            body.truncate(body.len() - TRAILER);
        });
    }
    assert_eq!(search(dir.path()).unwrap(), before);
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.unchecked().count(), SEGMENTS as usize);
    // A merge rewrites them with checksums.
    merge_all(dir.path(), None).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    assert!(
        report.is_ok() && report.unchecked().count() == 0,
        "{report:?}"
    );
}

#[test]
fn damaged_ann_file_fails_search_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), Some(AnnOptions::new("Flat", 10)));
    assert!(verify_dir(dir.path()).unwrap().is_ok());
    assert_eq!(search(dir.path()).unwrap().len(), expected_hits());
    let segment = &segment_ids(dir.path())[0];
    // Inside the Faiss bytes, past the header and the doc ids.
    let path = file(dir.path(), segment, "ltreann");
    flip(&path, 24 + 56 * 4 + 40);
    let message = search(dir.path()).unwrap_err().to_string();
    assert_clear(&message, segment, "ltreann");
    assert!(message.contains("checksum mismatch"), "{message}");
    let damaged = damaged(&verify_dir(dir.path()).unwrap());
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0].2, format!("{segment}.ltreann"));
}

#[test]
fn damaged_tantivy_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), None);
    let segment = &segment_ids(dir.path())[0];
    flip(&file(dir.path(), segment, "store"), 2);
    let damaged = damaged(&verify_dir(dir.path()).unwrap());
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0].1, None);
    assert_eq!(damaged[0].2, format!("{segment}.store"));
}
