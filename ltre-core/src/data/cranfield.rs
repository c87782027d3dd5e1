//! The Cranfield collection in its SMART layout (`cran.all.1400`, `cran.qry`, `cranqrel`).
//!
//! The BEIR readers of [`crate::data`] accept Cranfield paths too, so `index`, `eval` and
//! `train` take the collection as it is distributed: a directory holding the three files (each
//! reader picks its own), or one of the files by its name. Queries are numbered by position
//! (1..=225), as `cranqrel` refers to them. Cranfield grades run from 1 (complete answer) to 4
//! (of minimum interest), -1 meaning not relevant; they become gains `5 - grade` (4 = most
//! relevant, 1 = of minimum interest, still relevant) and -1 becomes 0 (judged not relevant),
//! so that higher is better as nDCG expects. Reading `cranqrel` as plain qrels would silently
//! invert the grades: that is why the readers recognise it.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{read_qrels_file, Doc, Qrels, Query};
use crate::{Error, Result};

/// The documents file.
pub const CORPUS_FILE: &str = "cran.all.1400";
/// The queries file.
pub const QUERIES_FILE: &str = "cran.qry";
/// The judgements file.
pub const QRELS_FILE: &str = "cranqrel";

/// The Cranfield file `name` that `path` designates: `path` itself when it is named `name`, or
/// `path/name` when `path` is a directory holding the collection (`cran.all.1400`).
pub fn cranfield_file(path: &Path, name: &str) -> Option<PathBuf> {
    if path.is_dir() {
        return path.join(CORPUS_FILE).is_file().then(|| path.join(name));
    }
    (path.file_name()? == name).then(|| path.to_path_buf())
}

/// The documents of `cran.all.1400`, with the line each starts on.
pub(super) fn read_docs(path: &Path) -> Result<Vec<(usize, Doc)>> {
    Ok(read_smart(path)?
        .into_iter()
        .map(|mut r| {
            (
                r.line,
                Doc {
                    id: r.id,
                    title: r.sections.remove(&'T').unwrap_or_default(),
                    // Two documents of the real collection (471, 995) have an empty body.
                    text: r.sections.remove(&'W').unwrap_or_default(),
                },
            )
        })
        .collect())
}

/// The queries of `cran.qry`, numbered by position.
pub(super) fn read_queries(path: &Path) -> Result<Vec<Query>> {
    read_smart(path)?
        .into_iter()
        .enumerate()
        .map(|(position, mut r)| {
            let text = r.sections.remove(&'W').ok_or_else(|| {
                Error::bad_file(
                    path,
                    format!("line {}: query {} has no `.W` text", r.line, r.id),
                )
            })?;
            Ok(Query {
                id: (position + 1).to_string(),
                text,
            })
        })
        .collect()
}

/// The judgements of `cranqrel`, grades mapped to gains (see the module docs).
pub(super) fn read_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels = read_qrels_file(path)?;
    for judgements in qrels.values_mut() {
        for grade in judgements.values_mut() {
            *grade = if (1..=4).contains(grade) {
                5 - *grade
            } else {
                0
            };
        }
    }
    Ok(qrels)
}

/// Reads the Cranfield collection from its directory (`cran.all.1400`, `cran.qry`, `cranqrel`),
/// grades mapped to gains as the module docs say.
pub fn read_cranfield(dir: impl AsRef<Path>) -> Result<(Vec<Doc>, Vec<Query>, Qrels)> {
    let dir = dir.as_ref();
    let docs = read_docs(&dir.join(CORPUS_FILE))?
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    let queries = read_queries(&dir.join(QUERIES_FILE))?;
    let qrels = read_qrels(&dir.join(QRELS_FILE))?;
    Ok((docs, queries, qrels))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{
        read_corpus, read_qrels as read_any_qrels, read_queries as read_any_queries,
    };

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
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

    #[test]
    fn beir_readers_take_cranfield_paths_and_map_grades() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            CORPUS_FILE,
            ".I 1\n.T\nwing\n.W\nflow\n.I 2\n.W\nbody\n",
        );
        write(dir.path(), QUERIES_FILE, ".I 001\n.W\nwhat wing\n");
        let qrels_file = write(dir.path(), QRELS_FILE, "1 1 1\n1 2 4\n");
        let docs = read_corpus(dir.path()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(read_corpus(dir.path().join(CORPUS_FILE)).unwrap(), docs);
        assert_eq!(read_any_queries(dir.path()).unwrap()[0].text, "what wing");
        // Grade 1 (complete answer) is the best: gain 4, not 1 as plain qrels would read it.
        for path in [dir.path(), qrels_file.as_path()] {
            let qrels = read_any_qrels(path).unwrap();
            assert_eq!((qrels["1"]["1"], qrels["1"]["2"]), (4, 1));
        }
        // A file that merely sits in a Cranfield directory is read as what it is.
        let plain = write(dir.path(), "other.tsv", "1 1 1\n");
        assert_eq!(read_any_qrels(&plain).unwrap()["1"]["1"], 1);
    }
}
