//! BEIR dataset readers: `corpus.jsonl`, `queries.jsonl` and `qrels/*.tsv`.
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

/// A streaming reader of a BEIR `corpus.jsonl` (`{"_id", "title", "text"}` per line).
///
/// Yields one `Result<Doc>` per non-blank line, so corpora larger than memory can be indexed.
pub struct CorpusReader {
    inner: JsonLines,
}

impl CorpusReader {
    /// Opens `path` for streaming.
    pub fn open(path: impl AsRef<Path>) -> Result<CorpusReader> {
        Ok(CorpusReader {
            inner: JsonLines::open(path.as_ref())?,
        })
    }

    /// The 1-based number of the last line read (useful to report progress or errors).
    pub fn line_number(&self) -> usize {
        self.inner.line_no
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Doc>;

    fn next(&mut self) -> Option<Result<Doc>> {
        let object = self.inner.next_object()?;
        Some(object.and_then(|map| {
            let id = self.inner.field(&map, "_id", true)?;
            if id.is_empty() {
                return Err(self.inner.bad("empty `_id`"));
            }
            Ok(Doc {
                id,
                title: self.inner.field(&map, "title", false)?,
                text: self.inner.field(&map, "text", true)?,
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

/// Reads a whole BEIR `corpus.jsonl`.
pub fn read_corpus(path: impl AsRef<Path>) -> Result<Vec<Doc>> {
    CorpusReader::open(path)?.collect()
}

/// Reads a BEIR `queries.jsonl` (`{"_id", "text"}` per line; other fields are ignored).
/// A query id given twice is an error naming both lines (which text is meant is ambiguous).
pub fn read_queries(path: impl AsRef<Path>) -> Result<Vec<Query>> {
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
/// last grade, as trec_eval does.
pub fn read_qrels(path: impl AsRef<Path>) -> Result<Qrels> {
    let path = path.as_ref();
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

/// One record of a SMART-format file (`.I id` then `.X` sections), with its line number.
struct SmartRecord {
    id: String,
    line: usize,
    sections: BTreeMap<char, String>,
}

fn read_smart(path: &Path) -> Result<Vec<SmartRecord>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    // Decoded here rather than by `read_to_string` so a bad byte is reported with its line.
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        Error::bad_file(
            path,
            format!("line {line}: not valid UTF-8; re-encode the file as UTF-8"),
        )
    })?;
    let mut records: Vec<SmartRecord> = Vec::new();
    let mut section: Option<char> = None;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if let Some(id) = line.strip_prefix(".I") {
            let id = id.trim();
            if id.is_empty() {
                return Err(Error::bad_file(
                    path,
                    format!("line {line_no}: `.I` without an id"),
                ));
            }
            records.push(SmartRecord {
                id: id.to_string(),
                line: line_no,
                sections: BTreeMap::new(),
            });
            section = None;
        } else if line.len() == 2 && line.starts_with('.') {
            section = line.chars().nth(1);
        } else {
            let (Some(record), Some(tag)) = (records.last_mut(), section) else {
                return Err(Error::bad_file(
                    path,
                    format!("line {line_no}: text outside a `.I` record section"),
                ));
            };
            let body = record.sections.entry(tag).or_default();
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(line.trim());
        }
    }
    Ok(records)
}

/// Reads the Cranfield collection from its directory (`cran.all.1400`, `cran.qry`, `cranqrel`).
///
/// Documents keep their `.I` number as id (title from `.T`, body from `.W`). Queries are
/// numbered by position (1..=225), as `cranqrel` refers to them, not by their `.I` number.
/// Cranfield grades run from 1 (complete answer) to 4 (of minimum interest), -1 meaning not
/// relevant; they are mapped to `5 - grade` (4 = most relevant) and -1 to 0, so that higher is
/// better as the metrics expect.
pub fn read_cranfield(dir: impl AsRef<Path>) -> Result<(Vec<Doc>, Vec<Query>, Qrels)> {
    let dir = dir.as_ref();
    let docs = read_smart(&dir.join("cran.all.1400"))?
        .into_iter()
        .map(|mut r| Doc {
            id: r.id,
            title: r.sections.remove(&'T').unwrap_or_default(),
            // Two documents of the real collection (471, 995) have an empty body.
            text: r.sections.remove(&'W').unwrap_or_default(),
        })
        .collect();
    let queries_path = dir.join("cran.qry");
    let queries = read_smart(&queries_path)?
        .into_iter()
        .enumerate()
        .map(|(position, mut r)| {
            let text = r.sections.remove(&'W').ok_or_else(|| {
                Error::bad_file(
                    &queries_path,
                    format!("line {}: query {} has no `.W` text", r.line, r.id),
                )
            })?;
            Ok(Query {
                id: (position + 1).to_string(),
                text,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut qrels = read_qrels(dir.join("cranqrel"))?;
    for judgements in qrels.values_mut() {
        for grade in judgements.values_mut() {
            *grade = if (1..=4).contains(grade) {
                5 - *grade
            } else {
                0
            };
        }
    }
    Ok((docs, queries, qrels))
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

    #[test]
    fn cranfield_layout() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "cran.all.1400",
            ".I 1\n.T\nwing flow\n.A\nx\n.W\nwing in a\nslipstream .\n.I 3\n.W\nbody\n",
        );
        write(
            dir.path(),
            "cran.qry",
            ".I 001\n.W\nwhat wing\n.I 004\n.W\nother\n",
        );
        write(dir.path(), "cranqrel", "1 1 2\n1 3 -1\n2 3 4\n");
        let (docs, queries, qrels) = read_cranfield(dir.path()).unwrap();
        assert_eq!(
            docs[0],
            Doc {
                id: "1".into(),
                title: "wing flow".into(),
                text: "wing in a slipstream .".into()
            }
        );
        assert_eq!(docs[1].id, "3");
        assert_eq!(
            queries[1],
            Query {
                id: "2".into(),
                text: "other".into()
            }
        );
        assert_eq!(
            (qrels["1"]["1"], qrels["1"]["3"], qrels["2"]["3"]),
            (3, 0, 1)
        );

        write(dir.path(), "cran.qry", "stray\n");
        let err = read_cranfield(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cran.qry") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn real_cranfield_if_present() {
        let manifest = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let dir = Path::new(&manifest).join("../../shared/data/cranfield");
        if !dir.join("cran.qry").exists() {
            return;
        }
        let (docs, queries, qrels) = read_cranfield(&dir).unwrap();
        assert_eq!((docs.len(), queries.len()), (1400, 225));
        assert!(qrels
            .keys()
            .all(|q| q.parse::<usize>().is_ok_and(|n| (1..=225).contains(&n))));
    }
}
