//! Judged queries: the training input of a fine-tune, from memory or from BEIR files.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use ltre_core::data::{read_qrels, read_queries, split_queries, Qrels, Query, QuerySplit};
use ltre_core::trainer::{join_queries, TrainQuery};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A query with graded judgments of documents, named by their external id (the id field).
///
/// Grades follow the TREC convention: `>= 1` is relevant, `0` (or negative) is judged not
/// relevant. Only relevant documents present in the index train the encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgedQuery {
    /// Query id, unique within a training set.
    pub id: String,
    /// The query text, as users type it.
    pub text: String,
    /// `(document id, grade)` pairs.
    pub judgments: Vec<(String, i32)>,
}

impl JudgedQuery {
    /// A query without judgments yet.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> JudgedQuery {
        JudgedQuery {
            id: id.into(),
            text: text.into(),
            judgments: Vec::new(),
        }
    }

    /// Adds the judgment `grade` for document `doc_id`.
    pub fn judge(mut self, doc_id: impl Into<String>, grade: i32) -> JudgedQuery {
        self.judgments.push((doc_id.into(), grade));
        self
    }
}

/// The judged queries a fine-tune trains on, with the sha256 recorded in the deployed
/// encoder's `encoder.json` (`training_data_sha256`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingData {
    queries: Vec<JudgedQuery>,
    sha256: String,
}

impl TrainingData {
    /// Training data from judged queries built by the application. The sha256 is computed
    /// from the queries themselves (independent of their order and of the judgments' order).
    pub fn new(queries: Vec<JudgedQuery>) -> TrainingData {
        let sha256 = judged_sha256(&queries);
        TrainingData { queries, sha256 }
    }

    /// Training data from a BEIR `queries.jsonl` and a qrels `.tsv`; the sha256 is that of the
    /// two files' bytes, concatenated (as `ltre-cli train` always recorded it).
    pub fn from_beir(queries: &Path, qrels: &Path) -> Result<TrainingData> {
        let judged = read_beir_judged(queries, qrels)?;
        let mut hasher = Sha256::new();
        for path in [queries, qrels] {
            hasher.update(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        }
        Ok(TrainingData {
            queries: judged,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// One seeded half of a BEIR collection's judged queries, for a collection with a single
    /// qrels file such as Cranfield: the half [`read_beir_judged_half`] reads.
    pub fn from_beir_half(
        queries: &Path,
        qrels: &Path,
        split: QuerySplit,
        seed: u64,
    ) -> Result<TrainingData> {
        Ok(TrainingData::new(read_beir_judged_half(
            queries, qrels, split, seed,
        )?))
    }

    /// The judged queries.
    pub fn queries(&self) -> &[JudgedQuery] {
        &self.queries
    }

    /// sha256 (hex) of the training data.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// The queries of a BEIR `queries.jsonl` that have judgments in the qrels `.tsv`, with them.
pub fn read_beir_judged(queries: &Path, qrels: &Path) -> Result<Vec<JudgedQuery>> {
    let qrels = read_qrels(qrels)?;
    Ok(read_queries(queries)?
        .into_iter()
        .filter_map(|q| {
            let judged = qrels.get(&q.id)?;
            Some(JudgedQuery {
                judgments: judged.iter().map(|(d, g)| (d.clone(), *g)).collect(),
                id: q.id,
                text: q.text,
            })
        })
        .collect())
}

/// The judged queries of one seeded half of the qrels' queries
/// ([`ltre_core::data::split_queries`]: the halves `ltre-cli eval --split` scores), so that
/// training on one half and evaluating on the other never mix.
pub fn read_beir_judged_half(
    queries: &Path,
    qrels: &Path,
    split: QuerySplit,
    seed: u64,
) -> Result<Vec<JudgedQuery>> {
    let half = split_queries(&read_qrels(qrels)?, split, seed);
    let mut judged = read_beir_judged(queries, qrels)?;
    judged.retain(|q| half.contains_key(&q.id));
    Ok(judged)
}

/// sha256 of judged queries in a canonical form: sorted by id, judgments sorted by document
/// id, every string length-prefixed (so no two different sets hash alike by concatenation).
pub(crate) fn judged_sha256(queries: &[JudgedQuery]) -> String {
    let mut sorted: Vec<&JudgedQuery> = queries.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.text.cmp(&b.text)));
    let mut hasher = Sha256::new();
    let mut put = |s: &str| {
        hasher.update((s.len() as u64).to_le_bytes());
        hasher.update(s.as_bytes());
    };
    for q in sorted {
        put(&q.id);
        put(&q.text);
        let judgments: BTreeMap<&str, i32> =
            q.judgments.iter().map(|(d, g)| (d.as_str(), *g)).collect();
        put(&judgments.len().to_string());
        for (doc, grade) in judgments {
            put(doc);
            put(&grade.to_string());
        }
    }
    hex::encode(hasher.finalize())
}

/// The trainer's view of judged queries: relevant documents as rows of the document matrix.
/// Queries without a relevant document in the index are dropped (they carry no signal).
pub(crate) fn to_train_queries(
    queries: &[JudgedQuery],
    doc_rows: &HashMap<String, usize>,
) -> Vec<TrainQuery> {
    // Each query is joined on its own (ids need not be unique here) by the trainer's own join;
    // a document judged twice keeps its higher grade.
    queries
        .iter()
        .flat_map(|q| {
            let mut judged: BTreeMap<String, i32> = BTreeMap::new();
            for (d, g) in &q.judgments {
                let grade = judged.entry(d.clone()).or_insert(*g);
                *grade = (*grade).max(*g);
            }
            let qrels = Qrels::from([(q.id.clone(), judged)]);
            let query = Query {
                id: q.id.clone(),
                text: q.text.clone(),
            };
            join_queries(std::slice::from_ref(&query), &qrels, doc_rows)
        })
        .collect()
}

/// Refuses two judged queries with the same id (their judgments would silently mix).
pub(crate) fn check_unique_ids(queries: &[JudgedQuery], what: &str) -> Result<()> {
    let mut seen = HashSet::new();
    for q in queries {
        if !seen.insert(q.id.as_str()) {
            return Err(Error::Invalid(format!(
                "{what}: query id `{}` appears twice; merge its judgments into one JudgedQuery",
                q.id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_ignores_order_and_sees_grades() {
        let a = JudgedQuery::new("q1", "red shoes")
            .judge("d1", 1)
            .judge("d2", 2);
        let b = JudgedQuery::new("q2", "blue hat").judge("d3", 1);
        let a_swapped = JudgedQuery::new("q1", "red shoes")
            .judge("d2", 2)
            .judge("d1", 1);
        assert_eq!(
            judged_sha256(&[a.clone(), b.clone()]),
            judged_sha256(&[b.clone(), a_swapped])
        );
        let regraded = JudgedQuery::new("q1", "red shoes")
            .judge("d1", 1)
            .judge("d2", 1);
        assert_ne!(
            judged_sha256(&[a, b.clone()]),
            judged_sha256(&[regraded, b])
        );
    }

    #[test]
    fn joins_relevant_rows_only() {
        let rows: HashMap<String, usize> = [("d1".to_string(), 0), ("d2".to_string(), 1)].into();
        let queries = [
            JudgedQuery::new("q1", "x").judge("d2", 1).judge("d1", 0),
            JudgedQuery::new("q2", "y").judge("missing", 2),
            JudgedQuery::new("q3", "z")
                .judge("d2", 2)
                .judge("d1", 3)
                .judge("d2", 1),
        ];
        let joined = to_train_queries(&queries, &rows);
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].relevant, vec![1]);
        assert_eq!(joined[0].grades, vec![1]);
        // Grades travel with their rows; a repeated judgment keeps the higher grade.
        assert_eq!(joined[1].relevant, vec![0, 1]);
        assert_eq!(joined[1].grades, vec![3, 2]);
    }

    #[test]
    fn beir_halves_partition_the_judged_queries() {
        let dir = tempfile::tempdir().unwrap();
        let (queries, qrels) = (
            dir.path().join("queries.jsonl"),
            dir.path().join("qrels.tsv"),
        );
        let (mut q, mut r) = (String::new(), String::from("query-id\tcorpus-id\tscore\n"));
        for i in 0..21 {
            q += &format!("{{\"_id\": \"q{i}\", \"text\": \"query {i}\"}}\n");
            r += &format!("q{i}\td{i}\t1\n");
        }
        std::fs::write(&queries, q).unwrap();
        std::fs::write(&qrels, r).unwrap();
        let ids = |split| -> HashSet<String> {
            read_beir_judged_half(&queries, &qrels, split, 13)
                .unwrap()
                .into_iter()
                .map(|q| q.id)
                .collect()
        };
        let (train, test) = (ids(QuerySplit::Train), ids(QuerySplit::Test));
        assert_eq!((train.len(), test.len()), (11, 10));
        assert!(train.is_disjoint(&test));
        // The same halves as `split_queries` over the qrels (what `eval --split` scores).
        let expected = split_queries(&read_qrels(&qrels).unwrap(), QuerySplit::Test, 13);
        assert_eq!(test, expected.keys().cloned().collect::<HashSet<_>>());
        let data = TrainingData::from_beir_half(&queries, &qrels, QuerySplit::Train, 13).unwrap();
        assert_eq!(data.queries().len(), 11);
    }
}
