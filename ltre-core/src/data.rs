//! BEIR dataset readers: `corpus.jsonl`, `queries.jsonl` and `qrels/*.tsv`; the same readers
//! take the Cranfield collection in its SMART layout ([`cranfield`]), and [`split_queries`]
//! gives a seeded train/test half of a collection that has a single qrels file.
//!
//! Every malformed line is reported as [`Error::BadFile`] with the file, the 1-based line number
//! and what is wrong, so a broken dataset is fixed at the right place instead of being silently
//! skipped. Blank lines are ignored.
//!
//! ```
//! # fn main() -> ltre_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let corpus = dir.path().join("corpus.jsonl");
//! # std::fs::write(&corpus, "{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"body\"}\n").unwrap();
//! # let qrels = dir.path().join("test.tsv");
//! # std::fs::write(&qrels, "query-id\tcorpus-id\tscore\nq1\td1\t2\n").unwrap();
//! use ltre_core::data::{read_corpus, read_qrels};
//! let docs = read_corpus(&corpus)?;
//! assert_eq!(docs[0].id, "d1");
//! let qrels = read_qrels(&qrels)?;
//! assert_eq!(qrels["q1"]["d1"], 2);
//! # Ok(())
//! # }
//! ```
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Error, Result};

pub mod cranfield;
mod split;

pub use cranfield::read_cranfield;
pub use split::{split_queries, QuerySplit};

/// One corpus document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// The document id (`_id`).
    pub id: String,
    /// The title (`title`, empty when absent).
    pub title: String,
    /// The body (`text`).
    pub text: String,
}

impl Doc {
    /// The text given to a dense document encoder: `"{title}. {text}"`, or the body alone when
    /// the title is empty. A title that already ends in punctuation gets no extra period.
    pub fn dense_text(&self) -> String {
        let title = self.title.trim();
        if title.is_empty() {
            return self.text.clone();
        }
        if title.ends_with(['.', '?', '!', ':']) {
            format!("{title} {}", self.text)
        } else {
            format!("{title}. {}", self.text)
        }
    }
}

/// One query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query id (`_id`).
    pub id: String,
    /// The query text (`text`).
    pub text: String,
}

/// Relevance judgements: query id -> document id -> grade. Grades `<= 0` mean non-relevant.
pub type Qrels = BTreeMap<String, BTreeMap<String, i32>>;

/// Reads a text file line by line, decoding each line as UTF-8 on its own so that a bad byte
/// is reported with its line number (`BufRead::lines` only says "stream did not contain valid
/// UTF-8").
struct TextLines {
    path: PathBuf,
    reader: BufReader<File>,
    buf: Vec<u8>,
    line_no: usize,
}

impl TextLines {
    fn open(path: &Path) -> Result<TextLines> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(TextLines {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            buf: Vec::new(),
            line_no: 0,
        })
    }

    /// The next line without its terminator, `None` at the end of the file.
    fn next_line(&mut self) -> Option<Result<String>> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(Error::io(&self.path, e))),
        }
        self.line_no += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Some(match std::str::from_utf8(&self.buf) {
            Ok(line) => Ok(line.to_string()),
            Err(e) => Err(Error::bad_file(
                &self.path,
                format!(
                    "line {}: not valid UTF-8 (bad byte at column {}); re-encode the file as UTF-8",
                    self.line_no,
                    e.valid_up_to() + 1
                ),
            )),
        })
    }
}

/// Streams a JSON Lines file as `(line number, object)` pairs.
struct JsonLines {
    path: PathBuf,
    lines: TextLines,
    line_no: usize,
}

impl JsonLines {
    fn open(path: &Path) -> Result<JsonLines> {
        Ok(JsonLines {
            path: path.to_path_buf(),
            lines: TextLines::open(path)?,
            line_no: 0,
        })
    }

    fn bad(&self, message: impl std::fmt::Display) -> Error {
        Error::bad_file(&self.path, format!("line {}: {message}", self.line_no))
    }

    /// The next non-blank line parsed as a JSON object.
    fn next_object(&mut self) -> Option<Result<serde_json::Map<String, Value>>> {
        loop {
            let line = self.lines.next_line()?;
            self.line_no = self.lines.line_no;
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(self.bad("expected a JSON object per line")),
                Err(e) => Err(self.bad(format!("invalid JSON ({e})"))),
            });
        }
    }

    /// A string field; `_id` may also be a JSON number (some exports write numeric ids).
    fn field(
        &self,
        map: &serde_json::Map<String, Value>,
        name: &str,
        required: bool,
    ) -> Result<String> {
        match map.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) if name == "_id" => Ok(n.to_string()),
            Some(Value::Null) | None if !required => Ok(String::new()),
            Some(Value::Null) | None => Err(self.bad(format!("missing field `{name}`"))),
            Some(other) => Err(self.bad(format!("field `{name}` must be a string, found {other}"))),
        }
    }
}

/// A streaming reader of a BEIR `corpus.jsonl` (`{"_id", "title", "text"}` per line), or of
/// Cranfield's `cran.all.1400` (see [`cranfield`]).
///
/// Yields one `Result<Doc>` per non-blank line, so corpora larger than memory can be indexed.
pub struct CorpusReader {
    inner: CorpusSource,
}

enum CorpusSource {
    Json(JsonLines),
    // Cranfield is 1,400 short documents: read at once, each with its starting line.
    Smart {
        docs: std::vec::IntoIter<(usize, Doc)>,
        line: usize,
    },
}

impl CorpusReader {
    /// Opens `path` for streaming: a BEIR `corpus.jsonl`, or a Cranfield directory or
    /// `cran.all.1400`.
    pub fn open(path: impl AsRef<Path>) -> Result<CorpusReader> {
        let path = path.as_ref();
        let inner = match cranfield::cranfield_file(path, cranfield::CORPUS_FILE) {
            Some(file) => CorpusSource::Smart {
                docs: cranfield::read_docs(&file)?.into_iter(),
                line: 0,
            },
            None => CorpusSource::Json(JsonLines::open(path)?),
        };
        Ok(CorpusReader { inner })
    }

    /// The 1-based number of the last line read (useful to report progress or errors); for
    /// Cranfield, the line its last document starts on.
    pub fn line_number(&self) -> usize {
        match &self.inner {
            CorpusSource::Json(lines) => lines.line_no,
            CorpusSource::Smart { line, .. } => *line,
        }
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Doc>;

    fn next(&mut self) -> Option<Result<Doc>> {
        let lines = match &mut self.inner {
            CorpusSource::Json(lines) => lines,
            CorpusSource::Smart { docs, line } => {
                let (at, doc) = docs.next()?;
                *line = at;
                return Some(Ok(doc));
            }
        };
        let object = lines.next_object()?;
        Some(object.and_then(|map| {
            let id = lines.field(&map, "_id", true)?;
            if id.is_empty() {
                return Err(lines.bad("empty `_id`"));
            }
            Ok(Doc {
                id,
                title: lines.field(&map, "title", false)?,
                text: lines.field(&map, "text", true)?,
            })
        }))
    }
}

/// The number of lines of a file (its newline bytes), read in blocks: the total for a progress
/// bar over a corpus larger than memory.
pub fn count_lines(path: impl AsRef<Path>) -> Result<usize> {
    use std::io::Read;
    let path = path.as_ref();
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let (mut buf, mut lines) = (vec![0u8; 1 << 16], 0);
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count();
    }
}

/// The number of documents a [`CorpusReader`] over `path` yields at most (the total of a
/// progress bar): the lines of a `corpus.jsonl` (blank ones included), Cranfield's documents.
pub fn count_documents(path: impl AsRef<Path>) -> Result<usize> {
    let path = path.as_ref();
    match cranfield::cranfield_file(path, cranfield::CORPUS_FILE) {
        Some(file) => Ok(cranfield::read_docs(&file)?.len()),
        None => count_lines(path),
    }
}

/// Reads a whole BEIR `corpus.jsonl`.
pub fn read_corpus(path: impl AsRef<Path>) -> Result<Vec<Doc>> {
    CorpusReader::open(path)?.collect()
}

/// Reads a BEIR `queries.jsonl` (`{"_id", "text"}` per line; other fields are ignored), or
/// Cranfield's `cran.qry` (a Cranfield directory or the file; see [`cranfield`]).
/// A query id given twice is an error naming both lines (which text is meant is ambiguous).
pub fn read_queries(path: impl AsRef<Path>) -> Result<Vec<Query>> {
    if let Some(file) = cranfield::cranfield_file(path.as_ref(), cranfield::QUERIES_FILE) {
        return cranfield::read_queries(&file);
    }
    let mut lines = JsonLines::open(path.as_ref())?;
    let mut queries = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    while let Some(object) = lines.next_object() {
        let map = object?;
        let id = lines.field(&map, "_id", true)?;
        if id.is_empty() {
            return Err(lines.bad("empty `_id`"));
        }
        let text = lines.field(&map, "text", true)?;
        if let Some(first) = seen.insert(id.clone(), lines.line_no) {
            return Err(lines.bad(format!(
                "duplicate query id `{id}` (first at line {first}); query ids must be unique"
            )));
        }
        queries.push(Query { id, text });
    }
    Ok(queries)
}

/// Reads a qrels file into [`Qrels`].
///
/// Accepts the BEIR layout `query-id <TAB> corpus-id <TAB> score` (the header line
/// `query-id corpus-id score` is skipped) and the TREC layout `qid iteration docid grade`.
/// Columns may be separated by tabs or spaces. A judgement repeated for the same pair keeps the
/// last grade, as trec_eval does. Cranfield's `cranqrel` (or a Cranfield directory) is read
/// with its grades mapped to gains (see [`cranfield`]).
pub fn read_qrels(path: impl AsRef<Path>) -> Result<Qrels> {
    let path = path.as_ref();
    match cranfield::cranfield_file(path, cranfield::QRELS_FILE) {
        Some(file) => cranfield::read_qrels(&file),
        None => read_qrels_file(path),
    }
}

/// [`read_qrels`] of a file in the BEIR or TREC layout, grades as they are.
fn read_qrels_file(path: &Path) -> Result<Qrels> {
    let mut lines = TextLines::open(path)?;
    let mut qrels = Qrels::new();
    while let Some(line) = lines.next_line() {
        let line = line?;
        let line_no = lines.line_no;
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        if line_no == 1 && cols.first() == Some(&"query-id") {
            continue;
        }
        let (qid, docid, grade) = match cols.as_slice() {
            [q, d, g] => (*q, *d, *g),
            [q, _, d, g] => (*q, *d, *g),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "line {line_no}: expected 3 columns (query-id corpus-id score) or 4 (qid iter docid grade), found {}",
                        cols.len()
                    ),
                ))
            }
        };
        let grade: i32 = grade.parse().map_err(|_| {
            Error::bad_file(
                path,
                format!("line {line_no}: grade `{grade}` is not an integer"),
            )
        })?;
        qrels
            .entry(qid.to_string())
            .or_default()
            .insert(docid.to_string(), grade);
    }
    Ok(qrels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn corpus_reads_fields_and_skips_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "c.jsonl",
            "{\"_id\": \"a\", \"title\": \"T\", \"text\": \"x\"}\n\n{\"_id\": 7, \"text\": \"y\", \"metadata\": {}}\n",
        );
        let docs = read_corpus(&path).unwrap();
        assert_eq!(
            docs,
            vec![
                Doc {
                    id: "a".into(),
                    title: "T".into(),
                    text: "x".into()
                },
                Doc {
                    id: "7".into(),
                    title: String::new(),
                    text: "y".into()
                },
            ]
        );
        assert_eq!(docs[0].dense_text(), "T. x");
        assert_eq!(docs[1].dense_text(), "y");
    }

    #[test]
    fn corpus_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "c.jsonl",
            "{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"b\"}\n",
        );
        let err = read_corpus(&path).unwrap_err().to_string();
        assert!(
            err.contains("c.jsonl") && err.contains("line 2") && err.contains("`text`"),
            "{err}"
        );

        let path = write(
            dir.path(),
            "d.jsonl",
            "{\"_id\": \"a\", \"text\": \"x\"}\n{not json\n",
        );
        let err = read_corpus(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("invalid JSON"),
            "{err}"
        );
    }

    #[test]
    fn streaming_reader_stops_at_first_error_but_keeps_earlier_docs() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "c.jsonl",
            "{\"_id\": \"a\", \"text\": \"x\"}\n[1]\n",
        );
        let mut reader = CorpusReader::open(&path).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().id, "a");
        assert!(reader.next().unwrap().is_err());
        assert_eq!(reader.line_number(), 2);
    }

    #[test]
    fn non_utf8_bytes_are_reported_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.jsonl");
        let mut bytes = b"{\"_id\": \"d1\", \"text\": \"ok\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"_id\": \"d2\", \"text\": \"caf\xe9\"}\n");
        std::fs::write(&path, bytes).unwrap();
        let err = read_corpus(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
        let qrels = dir.path().join("qrels.tsv");
        std::fs::write(&qrels, b"q1 d1 1\nq\xff d2 1\n").unwrap();
        let err = read_qrels(&qrels).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn duplicate_query_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "queries.jsonl",
            "{\"_id\": \"q1\", \"text\": \"a\"}\n\n{\"_id\": \"q1\", \"text\": \"b\"}\n",
        );
        let err = read_queries(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("first at line 1"),
            "{err}"
        );
    }

    #[test]
    fn queries_and_qrels() {
        let dir = tempfile::tempdir().unwrap();
        let q = write(
            dir.path(),
            "q.jsonl",
            "{\"_id\": \"1\", \"text\": \"hello\", \"metadata\": {}}\n",
        );
        assert_eq!(
            read_queries(&q).unwrap(),
            vec![Query {
                id: "1".into(),
                text: "hello".into()
            }]
        );

        let beir = write(
            dir.path(),
            "test.tsv",
            "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t0\n2\td3\t2\n",
        );
        let qrels = read_qrels(&beir).unwrap();
        assert_eq!(qrels["1"].len(), 2);
        assert_eq!(qrels["1"]["d2"], 0);
        assert_eq!(qrels["2"]["d3"], 2);

        let trec = write(dir.path(), "qrels.trec", "1 0 d1 1\n1 0 d2 3\n");
        assert_eq!(read_qrels(&trec).unwrap()["1"]["d2"], 3);
    }

    #[test]
    fn qrels_errors_name_line_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "bad.tsv",
            "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\n",
        );
        let err = read_qrels(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.tsv") && err.contains("line 3") && err.contains("found 2"),
            "{err}"
        );

        let path = write(dir.path(), "bad2.tsv", "1\td1\tone\n");
        let err = read_qrels(&path).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("`one`"), "{err}");
    }
}
