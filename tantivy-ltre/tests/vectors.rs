//! Parquet vector shards (`tantivy_ltre::vectors`): shards embedded in parts and indexed give
//! the index a direct run gives (vectors, checksum, search), and every way a shard directory can
//! be wrong is refused with the file named.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use ltre_core::testing::{export_tiny_model, TINY_WORDS};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use tantivy_ltre::checksum::read_all_vectors;
use tantivy_ltre::corpus::{index_corpus, CorpusOptions, ID_FIELD};
use tantivy_ltre::encoders::EncoderStore;
use tantivy_ltre::vectors::{embed_corpus, EmbedOptions, Shard, VectorSet};
use tantivy_ltre::{LtreIndex, RetrievalMode, SearchOptions};

const BATCH: usize = 3;
const COMMIT: usize = 7;

/// `n` documents of tiny-vocabulary words (deterministic), one repeated id at the end.
fn write_corpus(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let words: Vec<&str> = (0..(3 + i % 9))
            .map(|j| TINY_WORDS[(i * 7 + j * 3) % TINY_WORDS.len()])
            .collect();
        let id = format!("doc{i}");
        lines.push(
            serde_json::json!({"_id": id, "title": TINY_WORDS[i % TINY_WORDS.len()], "text": words.join(" ")})
                .to_string(),
        );
        ids.push(id);
    }
    // A repeated id: the index keeps the first occurrence, and so must the shards.
    lines.push(serde_json::json!({"_id": "doc0", "text": "a repeat"}).to_string());
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    ids
}

fn corpus_options(model: &Path, vectors: Option<&Path>) -> CorpusOptions {
    CorpusOptions {
        model: Some(model.to_path_buf()),
        vectors: vectors.map(Path::to_path_buf),
        batch_size: BATCH,
        commit_every: COMMIT,
        threads: 1,
        ..CorpusOptions::default()
    }
}

fn embed_options(model: &Path, i: usize, n: usize) -> EmbedOptions {
    EmbedOptions {
        shard: Shard::new(i, n).unwrap(),
        batch_size: BATCH,
        commit_every: COMMIT,
        threads: 1,
        ..EmbedOptions::new(model)
    }
}

fn embed_all(corpus: &Path, out: &Path, model: &Path, n: usize) {
    for i in 0..n {
        embed_corpus(corpus, out, &embed_options(model, i, n), |_| {}).unwrap();
    }
}

fn recorded(dir: &Path) -> String {
    EncoderStore::new(dir)
        .record("base")
        .unwrap()
        .document_vectors_sha256
}

fn vectors_of(dir: &Path) -> (Vec<String>, Vec<f32>) {
    let index = LtreIndex::open(dir).unwrap();
    let (ids, matrix) =
        read_all_vectors(&index.searcher(), index.dense_field().unwrap(), ID_FIELD).unwrap();
    (ids, matrix.into_raw_vec_and_offset().0)
}

fn dense_search(dir: &Path, query: &str) -> Vec<(String, f32)> {
    let index = LtreIndex::open(dir).unwrap();
    let options = SearchOptions {
        mode: RetrievalMode::Dense,
        k: 10,
        ..SearchOptions::default()
    };
    index
        .search(query, &options)
        .unwrap()
        .into_iter()
        .map(|h| (h.id, h.score))
        .collect()
}

struct Setup {
    _root: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    corpus: PathBuf,
}

fn setup(n: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let model = export_tiny_model(&root, 1, false).unwrap();
    let corpus = root.join("corpus.jsonl");
    write_corpus(&corpus, n);
    Setup {
        _root: dir,
        root,
        model,
        corpus,
    }
}

#[test]
fn shards_indexed_equal_a_direct_index() {
    let s = setup(40);
    let direct = s.root.join("direct");
    index_corpus(&direct, &s.corpus, &corpus_options(&s.model, None), |_| {}).unwrap();
    let out = s.root.join("vectors");
    embed_all(&s.corpus, &out, &s.model, 2);
    let set = VectorSet::load(&out).unwrap();
    assert_eq!(set.len(), 40);
    assert_eq!(set.files().len(), 2);
    let from = s.root.join("from-vectors");
    let report = index_corpus(
        &from,
        &s.corpus,
        &corpus_options(&s.model, Some(&out)),
        |_| {},
    )
    .unwrap();
    assert_eq!((report.added, report.duplicates), (40, 1));
    assert_eq!((report.missing_vectors, report.extra_vectors), (0, 0));
    // Bit-identical vectors, so the same recorded checksum and the same search.
    assert_eq!(vectors_of(&direct), vectors_of(&from));
    assert_eq!(recorded(&direct), recorded(&from));
    assert!(!recorded(&from).is_empty());
    for query in ["the fox", "water river", "bread"] {
        assert_eq!(dense_search(&direct, query), dense_search(&from, query));
    }
    // Integrity check passes, and rerunning (resume) adds nothing and keeps the record.
    let opened = LtreIndex::open(&from).unwrap();
    assert!(tantivy_ltre::verify::verify_index(opened.index())
        .unwrap()
        .is_ok());
    drop(opened);
    let again = index_corpus(
        &from,
        &s.corpus,
        &corpus_options(&s.model, Some(&out)),
        |_| {},
    )
    .unwrap();
    assert_eq!((again.added, again.skipped), (0, 40));
    assert_eq!(recorded(&direct), recorded(&from));
}

#[test]
fn three_shards_partition_the_corpus_and_reruns_skip_written_shards() {
    let s = setup(25);
    let out = s.root.join("vectors");
    // What a writer killed mid-shard leaves (pid 0 never runs): a hidden temporary sibling, which
    // neither counts as the shard nor survives the rerun.
    std::fs::create_dir_all(&out).unwrap();
    let stale = out.join(".part-00000-of-00003.parquet.tmp-0-1-0");
    std::fs::write(&stale, b"PAR1 half a file").unwrap();
    let mut total = 0;
    for i in 0..3 {
        let report = embed_corpus(&s.corpus, &out, &embed_options(&s.model, i, 3), |_| {}).unwrap();
        assert!(!report.already_done);
        assert_eq!(report.duplicates, 1);
        total += report.documents;
    }
    assert_eq!(total, 25);
    // Leftovers of dead processes are found through /proc.
    if Path::new("/proc/self").exists() {
        assert!(!stale.exists());
    }
    let again = embed_corpus(&s.corpus, &out, &embed_options(&s.model, 1, 3), |_| {}).unwrap();
    assert!(again.already_done, "{again}");
    // A leftover temporary file of a killed writer is not read.
    std::fs::write(out.join(".part-00001-of-00003.parquet.tmp-0-1-0"), b"half").unwrap();
    assert_eq!(VectorSet::load(&out).unwrap().len(), 25);
    // Another shard count in the same directory is refused.
    let err = embed_corpus(&s.corpus, &out, &embed_options(&s.model, 0, 2), |_| {}).unwrap_err();
    assert!(err.to_string().contains("3-way split"), "{err}");
}

#[test]
fn vectors_of_another_model_are_refused_naming_both_fingerprints() {
    let s = setup(10);
    let other = export_tiny_model(&s.root, 2, false).unwrap();
    let out = s.root.join("vectors");
    embed_all(&s.corpus, &out, &other, 1);
    let dir = s.root.join("index");
    let err = index_corpus(
        &dir,
        &s.corpus,
        &corpus_options(&s.model, Some(&out)),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    let sha = |m: &Path| {
        ltre_core::manifest::Manifest::load(m)
            .unwrap()
            .weights_sha256
    };
    assert!(err.contains(&sha(&s.model)[..12]), "{err}");
    assert!(err.contains(&sha(&other)[..12]), "{err}");
    assert!(!dir.join("ltre.json").exists(), "nothing may be written");
    // Embedding with another model into the same directory is refused too.
    let err = embed_corpus(&s.corpus, &out, &embed_options(&s.model, 0, 1), |_| {}).unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");
}

/// Writes a shard by hand: `rows` of `(id, vector)`, with `metadata`.
fn write_shard(path: &Path, dim: usize, rows: &[(&str, Vec<f32>)], metadata: &[(&str, String)]) {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(item.clone(), dim as i32),
            false,
        ),
    ]));
    let ids: Vec<&str> = rows.iter().map(|(id, _)| *id).collect();
    let values: Vec<f32> = rows.iter().flat_map(|(_, v)| v.clone()).collect();
    let vectors =
        FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(values)), None)
            .unwrap();
    let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids)), Arc::new(vectors)];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
                .collect(),
        ))
        .build();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn metadata(sha: &str, dim: usize) -> Vec<(&'static str, String)> {
    vec![
        ("ltre.format_version", "1".into()),
        ("ltre.weights_sha256", sha.into()),
        ("ltre.dim", dim.to_string()),
    ]
}

#[test]
fn dimension_mismatches_are_refused() {
    let s = setup(3);
    let manifest = ltre_core::manifest::Manifest::load(&s.model).unwrap();
    let dim = manifest.embedding_dim;
    let out = s.root.join("vectors");
    std::fs::create_dir(&out).unwrap();
    // Right fingerprint, wrong dimension for the model.
    let rows: Vec<(&str, Vec<f32>)> = ["doc0", "doc1", "doc2"]
        .iter()
        .map(|id| (*id, vec![0.5; dim + 1]))
        .collect();
    write_shard(
        &out.join("a.parquet"),
        dim + 1,
        &rows,
        &metadata(&manifest.weights_sha256, dim + 1),
    );
    let err = index_corpus(
        &s.root.join("index"),
        &s.corpus,
        &corpus_options(&s.model, Some(&out)),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("{}-d", dim + 1)) && err.contains(&format!("{dim}-d")),
        "{err}"
    );
    // Two files of different dimensions in one directory.
    let rows: Vec<(&str, Vec<f32>)> = vec![("doc3", vec![0.5; dim])];
    write_shard(
        &out.join("b.parquet"),
        dim,
        &rows,
        &metadata(&manifest.weights_sha256, dim),
    );
    let err = VectorSet::load(&out).unwrap_err().to_string();
    assert!(
        err.contains("b.parquet") && err.contains("a.parquet"),
        "{err}"
    );
    // A file whose metadata says one dimension and whose column holds another.
    std::fs::remove_file(out.join("a.parquet")).unwrap();
    let rows: Vec<(&str, Vec<f32>)> = vec![("doc4", vec![0.5; dim])];
    write_shard(
        &out.join("c.parquet"),
        dim,
        &rows,
        &metadata(&manifest.weights_sha256, dim + 2),
    );
    let err = VectorSet::load(&out).unwrap_err().to_string();
    assert!(
        err.contains("b.parquet") || err.contains("c.parquet"),
        "{err}"
    );
}

#[test]
fn missing_and_extra_ids_are_reported() {
    let s = setup(12);
    let out = s.root.join("vectors");
    embed_all(&s.corpus, &out, &s.model, 1);
    // The corpus loses doc0 (an extra vector) and gains `new` (no vector).
    let text = std::fs::read_to_string(&s.corpus).unwrap();
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.contains("\"doc0\"")).collect();
    let added = r#"{"_id": "new", "title": "", "text": "the fox"}"#;
    lines.push(added);
    let corpus = s.root.join("changed.jsonl");
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let dir = s.root.join("index");
    let err = index_corpus(&dir, &corpus, &corpus_options(&s.model, Some(&out)), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 of the 12 corpus documents have no vector"),
        "{err}"
    );
    assert!(
        err.contains("new") && err.contains("--skip-missing-vectors"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing may be written");
    let options = CorpusOptions {
        skip_missing_vectors: true,
        ..corpus_options(&s.model, Some(&out))
    };
    let report = index_corpus(&dir, &corpus, &options, |_| {}).unwrap();
    assert_eq!(report.added, 11);
    assert_eq!(
        (
            report.missing_vectors,
            report.missing_vector_examples.clone()
        ),
        (1, vec!["new".to_string()])
    );
    assert_eq!(
        (report.extra_vectors, report.extra_vector_examples.clone()),
        (1, vec!["doc0".to_string()])
    );
    assert_eq!(report.vector_warnings().len(), 2);
    // The recorded checksum is that of the indexed vectors.
    let index = LtreIndex::open(&dir).unwrap();
    let now = tantivy_ltre::checksum::document_vectors_sha256(
        &index.searcher(),
        index.dense_field().unwrap(),
        ID_FIELD,
    )
    .unwrap();
    assert_eq!(recorded(&dir), now);
}

#[test]
fn an_id_in_two_shards_is_refused_naming_both_files() {
    let s = setup(8);
    let out = s.root.join("vectors");
    embed_all(&s.corpus, &out, &s.model, 2);
    std::fs::copy(
        out.join("part-00000-of-00002.parquet"),
        out.join("zz-copy.parquet"),
    )
    .unwrap();
    let err = VectorSet::load(&out).unwrap_err().to_string();
    assert!(
        err.contains("zz-copy.parquet") && err.contains("part-00000-of-00002.parquet"),
        "{err}"
    );
}

#[test]
fn damaged_files_are_refused_naming_the_file() {
    let s = setup(8);
    let out = s.root.join("vectors");
    embed_all(&s.corpus, &out, &s.model, 2);
    let part = out.join("part-00001-of-00002.parquet");
    let bytes = std::fs::read(&part).unwrap();
    // Truncated: the footer is gone.
    std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
    let err = VectorSet::load(&out).unwrap_err().to_string();
    assert!(
        err.contains("part-00001-of-00002.parquet") && err.contains("delete it"),
        "{err}"
    );
    // Garbage.
    std::fs::write(&part, b"not parquet at all, just some bytes").unwrap();
    let err = VectorSet::load(&out).unwrap_err().to_string();
    assert!(err.contains("part-00001-of-00002.parquet"), "{err}");
    // A Parquet file without ltre metadata.
    write_shard(&part, 2, &[("x", vec![1.0, 0.0])], &[]);
    let err = VectorSet::load(&out).unwrap_err().to_string();
    assert!(
        err.contains("ltre.format_version") && err.contains("part-00001"),
        "{err}"
    );
    // A NaN component.
    let manifest = ltre_core::manifest::Manifest::load(&s.model).unwrap();
    let sha = manifest.weights_sha256.clone();
    let mut v = vec![0.1; manifest.embedding_dim];
    v[3] = f32::NAN;
    write_shard(
        &part,
        manifest.embedding_dim,
        &[("new1", v)],
        &metadata(&sha, manifest.embedding_dim),
    );
    let err = VectorSet::load(&out).unwrap_err().to_string();
    assert!(err.contains("new1") && err.contains("component 3"), "{err}");
    // A missing part is named when indexing.
    std::fs::remove_file(&part).unwrap();
    let err = index_corpus(
        &s.root.join("index"),
        &s.corpus,
        &corpus_options(&s.model, Some(&out)),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("1/2"), "{err}");
}
