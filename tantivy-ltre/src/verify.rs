//! The full integrity check of an index: [`verify_index`] (or [`verify_dir`]) reads every
//! searchable segment and reports, per segment, the state of its dense field's files and any
//! damaged Tantivy file. `ltre-cli verify` prints the report.
//!
//! For each segment:
//!
//! - `.ltrevec`: the cheap check of every open (header, header checksum, lengths against the
//!   segment's `max_doc` and the schema's dimension, bitmap population), then the payload
//!   checksum, finite present rows and zero absent rows ([`SegmentVectors::check_payload`]);
//! - `.ltreann`: its checksum, lengths, doc ids (increasing, below `max_doc`, each with a vector),
//!   and the Faiss index loaded back with one vector per doc id;
//! - every file of the segment (Tantivy's and the dense field's): Tantivy's own footer checksum
//!   (crc32), which Tantivy does not check when it opens a file.
//!
//! Files written before checksums existed (format version 1) get the structural checks and
//! are reported [`FileStatus::Unchecked`]; the index stays readable, and re-indexing (or the
//! next merge of the segment) rewrites them with checksums.
//!
//! Guarantees: the report lists every searchable segment; a file whose checks fail is
//! [`FileStatus::Damaged`] with what is wrong; verification never modifies the index and never
//! panics on damaged bytes.
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tantivy::directory::error::OpenReadError;
use tantivy::index::SegmentComponent;
use tantivy::{Index, Segment};

use crate::ann::{self, AnnSegment, ANN_EXTENSION};
use crate::error::{Error, Result};
use crate::field::{read_component, DenseField, SegmentVectors, VECTORS_EXTENSION};

/// The state of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum FileStatus {
    /// Every check passed, checksums included.
    Ok,
    /// Readable, but written without checksums (format version 1): only its structure could be
    /// checked.
    Unchecked(String),
    /// What is wrong with the file.
    Damaged(Vec<String>),
}

/// One checked file of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The file name inside the index directory.
    pub file: String,
    /// The dense field the file belongs to (`None` for Tantivy's own files).
    pub field: Option<String>,
    /// The outcome.
    #[serde(flatten)]
    pub status: FileStatus,
}

/// One searchable segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentReport {
    /// The segment id (as in its file names).
    pub segment: String,
    /// Documents in the segment, deleted ones included.
    pub max_doc: u32,
    /// The dense field's files (always listed) and the damaged Tantivy files.
    pub files: Vec<FileReport>,
    /// Tantivy files whose footer checksum was checked.
    pub tantivy_files_checked: usize,
}

/// The outcome of [`verify_index`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The dense field, `None` when the schema has none (only Tantivy's files are checked).
    pub dense_field: Option<String>,
    /// Every searchable segment.
    pub segments: Vec<SegmentReport>,
}

impl VerifyReport {
    /// Whether no file is damaged (unchecked old-format files are not damage).
    pub fn is_ok(&self) -> bool {
        self.damaged().next().is_none()
    }

    /// The damaged files with their segment.
    pub fn damaged(&self) -> impl Iterator<Item = (&SegmentReport, &FileReport)> {
        self.segments.iter().flat_map(|segment| {
            segment
                .files
                .iter()
                .filter(|f| matches!(f.status, FileStatus::Damaged(_)))
                .map(move |f| (segment, f))
        })
    }

    /// The files without checksums (format version 1), with their segment.
    pub fn unchecked(&self) -> impl Iterator<Item = (&SegmentReport, &FileReport)> {
        self.segments.iter().flat_map(|segment| {
            segment
                .files
                .iter()
                .filter(|f| matches!(f.status, FileStatus::Unchecked(_)))
                .map(move |f| (segment, f))
        })
    }
}

impl VerifyReport {
    /// One line per damaged file (segment, field or "Tantivy data", file), empty when none:
    /// what a command line reports before exiting non-zero.
    pub fn damage_lines(&self) -> Vec<String> {
        self.damaged()
            .map(|(segment, file)| {
                let field = file
                    .field
                    .as_deref()
                    .map_or_else(|| "Tantivy data".to_string(), |f| format!("field `{f}`"));
                format!("segment {} ({field}): {}", segment.segment, file.file)
            })
            .collect()
    }
}

/// The report as a listing: the dense field, then each segment with each file's status.
impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dense_field {
            Some(field) => writeln!(f, "dense field `{field}`")?,
            None => writeln!(f, "no dense field: checking Tantivy's files only")?,
        }
        for segment in &self.segments {
            writeln!(
                f,
                "segment {} ({} docs, {} Tantivy files checked)",
                segment.segment, segment.max_doc, segment.tantivy_files_checked
            )?;
            for file in &segment.files {
                match &file.status {
                    FileStatus::Ok => writeln!(f, "  ok        {}", file.file)?,
                    FileStatus::Unchecked(note) => {
                        writeln!(f, "  unchecked {}: {note}", file.file)?
                    }
                    FileStatus::Damaged(problems) => {
                        writeln!(f, "  DAMAGED   {}: {}", file.file, problems.join("; "))?
                    }
                }
            }
        }
        Ok(())
    }
}

/// Opens the Tantivy index in `dir` (an ltre index directory or any Tantivy index) and
/// verifies it.
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let index = Index::open_in_dir(dir).map_err(|e| Error::BadFile {
        path: dir.to_path_buf(),
        message: format!("cannot open the Tantivy index: {e}"),
    })?;
    verify_index(&index)
}

/// Verifies every searchable segment of `index` (see the module docs). `Err` only when the
/// index itself cannot be listed; damage is reported, not returned as an error.
pub fn verify_index(index: &Index) -> Result<VerifyReport> {
    let dense = match DenseField::from_schema(&index.schema()) {
        Ok(dense) => Some(dense),
        Err(Error::Schema(_)) if !has_dense_type(index) => None,
        Err(e) => return Err(e),
    };
    let managed = index.directory().list_managed_files();
    let mut segments = Vec::new();
    for segment in index.searchable_segments()? {
        segments.push(verify_segment(index, &segment, dense.as_ref(), &managed));
    }
    Ok(VerifyReport {
        dense_field: dense.map(|d| d.name().to_string()),
        segments,
    })
}

fn has_dense_type(index: &Index) -> bool {
    index.schema().fields().any(|(_, entry)| {
        matches!(entry.field_type(), tantivy::schema::FieldType::Custom(o) if o.type_name() == crate::DENSE_TYPE_NAME)
    })
}

fn verify_segment(
    index: &Index,
    segment: &Segment,
    dense: Option<&DenseField>,
    managed: &HashSet<PathBuf>,
) -> SegmentReport {
    let meta = segment.meta();
    let mut files = Vec::new();
    let mut dense_files = BTreeSet::new();
    if let Some(dense) = dense {
        let vectors_path = meta.relative_path(custom(VECTORS_EXTENSION));
        let ann_path = meta.relative_path(custom(ANN_EXTENSION));
        let (status, vectors) = check_vectors(segment, dense);
        files.push(with_crc(index, &vectors_path, dense, status));
        let status = check_ann(segment, vectors.as_ref());
        files.push(with_crc(index, &ann_path, dense, status));
        dense_files.extend([vectors_path, ann_path]);
    }
    // Tantivy's own components: every extension its plugins own, and the delete bitset.
    let mut others: BTreeSet<PathBuf> = index
        .all_plugins()
        .flat_map(|plugin| {
            plugin
                .extensions()
                .iter()
                .map(|ext| meta.relative_path(custom(ext)))
                .collect::<Vec<_>>()
        })
        .collect();
    if meta.has_deletes() {
        others.insert(meta.relative_path(SegmentComponent::Delete));
    }
    let mut checked = 0;
    for path in others.difference(&dense_files) {
        if !managed.contains(path) {
            continue; // a component this segment never wrote
        }
        checked += 1;
        if let Some(problem) = crc_problem(index, path) {
            files.push(FileReport {
                file: path.to_string_lossy().into_owned(),
                field: None,
                status: FileStatus::Damaged(vec![problem]),
            });
        }
    }
    SegmentReport {
        segment: segment.id().uuid_string(),
        max_doc: meta.max_doc(),
        files,
        tantivy_files_checked: checked,
    }
}

fn custom(extension: &str) -> SegmentComponent {
    SegmentComponent::Custom(extension.to_string())
}

/// The `.ltrevec` checks; the vectors, when they could be opened, for the `.ltreann` checks.
fn check_vectors(segment: &Segment, dense: &DenseField) -> (FileStatus, Option<SegmentVectors>) {
    let opened = read_component(segment.open_read(custom(VECTORS_EXTENSION))).and_then(|bytes| {
        SegmentVectors::from_bytes(bytes, dense.dim(), Some(segment.meta().max_doc()))
    });
    let vectors = match opened {
        Ok(vectors) => vectors,
        Err(what) => return (FileStatus::Damaged(vec![what]), None),
    };
    let problems = vectors.check_payload();
    let status = if !problems.is_empty() {
        FileStatus::Damaged(problems)
    } else if !vectors.has_checksums() {
        FileStatus::Unchecked(unchecked_note(vectors.format_version()))
    } else {
        FileStatus::Ok
    };
    (status, Some(vectors))
}

fn check_ann(segment: &Segment, vectors: Option<&SegmentVectors>) -> FileStatus {
    let bytes = match read_component(segment.open_read(custom(ANN_EXTENSION))) {
        Ok(bytes) => bytes,
        Err(what) => return FileStatus::Damaged(vec![what]),
    };
    let checked = match ann::check_bytes(bytes.as_slice(), Some(segment.meta().max_doc())) {
        Ok(checked) => checked,
        Err(what) => return FileStatus::Damaged(vec![what]),
    };
    let version = checked.version;
    if let (Some(docs), Some(vectors)) = (&checked.row_docs, vectors) {
        let missing = docs.iter().filter(|d| !vectors.has_vector(**d)).count();
        if missing > 0 {
            return FileStatus::Damaged(vec![format!(
                "{missing} doc ids of the approximate index have no vector in the .{VECTORS_EXTENSION} file"
            )]);
        }
    }
    if let Err(e) = AnnSegment::from_checked(checked) {
        return FileStatus::Damaged(vec![format!("the Faiss index does not load: {e}")]);
    }
    if version == 1 {
        FileStatus::Unchecked(unchecked_note(version))
    } else {
        FileStatus::Ok
    }
}

fn unchecked_note(version: u32) -> String {
    format!(
        "format version {version}, written without checksums: structure checked only; \
         re-index (or let the segment merge) to add checksums"
    )
}

/// Adds the result of Tantivy's footer checksum to a dense file's status, when the file's own
/// checks found nothing (they say more).
fn with_crc(index: &Index, path: &Path, dense: &DenseField, status: FileStatus) -> FileReport {
    let status = match status {
        FileStatus::Damaged(problems) => FileStatus::Damaged(problems),
        other => match crc_problem(index, path) {
            Some(problem) => FileStatus::Damaged(vec![problem]),
            None => other,
        },
    };
    FileReport {
        file: path.to_string_lossy().into_owned(),
        field: Some(dense.name().to_string()),
        status,
    }
}

/// Tantivy's footer checksum of a file: `None` when it matches.
fn crc_problem(index: &Index, path: &Path) -> Option<String> {
    match index.directory().validate_checksum(path) {
        Ok(true) => None,
        Ok(false) => Some(
            "Tantivy's footer checksum (crc32) does not match: the file changed after it was written"
                .into(),
        ),
        Err(OpenReadError::FileDoesNotExist(_)) => Some("the file is missing".into()),
        Err(e) => Some(
            read_component(Err(e))
                .err()
                .unwrap_or_else(|| "cannot read the file".into()),
        ),
    }
}
