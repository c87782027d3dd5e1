//! From feedback records to counts and to judged queries (the rules are in the module docs).
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::{normalize_query, query_id, FeedbackRead, Signal, GRADE_MAX, GRADE_MIN};
use crate::error::{Error, Result};
use crate::finetune::{JudgedQuery, TrainingData};

/// How clicks become grades when feedback is turned into training data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackPolicy {
    /// The grade of a (query, document) pair with enough clicks and no explicit grade
    /// (default 1).
    pub click_grade: i32,
    /// Clicks (distinct times) a pair needs to count (default 1). Raise it to keep only
    /// documents clicked again and again for a query.
    pub min_clicks: u32,
}

impl Default for FeedbackPolicy {
    fn default() -> FeedbackPolicy {
        FeedbackPolicy {
            click_grade: 1,
            min_clicks: 1,
        }
    }
}

impl FeedbackPolicy {
    /// The default policy with clicks needing `min_clicks` clicks.
    pub fn min_clicks(mut self, min_clicks: u32) -> FeedbackPolicy {
        self.min_clicks = min_clicks;
        self
    }

    /// The default policy with clicked pairs graded `grade`.
    pub fn click_grade(mut self, grade: i32) -> FeedbackPolicy {
        self.click_grade = grade;
        self
    }

    fn check(&self) -> Result<()> {
        if self.min_clicks == 0 {
            return Err(Error::Invalid(
                "FeedbackPolicy::min_clicks is 0; it must be at least 1 (a pair never clicked \
                 carries no signal)"
                    .into(),
            ));
        }
        if !(GRADE_MIN..=GRADE_MAX).contains(&self.click_grade) {
            return Err(Error::Invalid(format!(
                "FeedbackPolicy::click_grade {} is outside {GRADE_MIN}..={GRADE_MAX}",
                self.click_grade
            )));
        }
        Ok(())
    }
}

/// Counts of a feedback log ([`FeedbackLog::stats`](super::FeedbackLog::stats)).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FeedbackStats {
    /// Complete records, duplicates included (`grades + clicks`).
    pub records: usize,
    /// Records with an explicit grade.
    pub grades: usize,
    /// Click records.
    pub clicks: usize,
    /// Exact repeats of an earlier record (same normalised query, document, signal, time),
    /// ignored for training.
    pub duplicates: usize,
    /// Distinct normalised query texts.
    pub distinct_queries: usize,
    /// Distinct (normalised query, document) pairs.
    pub distinct_pairs: usize,
    /// Empty lines skipped.
    pub blank_lines: usize,
    /// Bytes of a torn last line ignored (an interrupted append; 0 when none).
    pub torn_tail_bytes: u64,
    /// Earliest record time (unix seconds).
    pub first_time: Option<u64>,
    /// Latest record time (unix seconds).
    pub last_time: Option<u64>,
}

/// `records N (G grades, C clicks), D duplicates ignored; Q distinct queries, P (query,
/// document) pairs[; torn last line ...]`.
impl fmt::Display for FeedbackStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records ({} grades, {} clicks), {} exact duplicates ignored; {} distinct queries, \
             {} distinct (query, document) pairs",
            self.records,
            self.grades,
            self.clicks,
            self.duplicates,
            self.distinct_queries,
            self.distinct_pairs
        )?;
        if let (Some(first), Some(last)) = (self.first_time, self.last_time) {
            write!(f, "; times {first}..={last} (unix seconds)")?;
        }
        if self.blank_lines > 0 {
            write!(f, "; {} blank lines skipped", self.blank_lines)?;
        }
        if self.torn_tail_bytes > 0 {
            write!(
                f,
                "; a torn last line of {} bytes ignored (an append was interrupted; the next \
                 append removes it)",
                self.torn_tail_bytes
            )?;
        }
        Ok(())
    }
}

/// What is known about one (query, document) pair.
#[derive(Default)]
struct Pair {
    /// The latest grade as (time, position in the log, grade).
    grade: Option<(u64, usize, i32)>,
    /// Distinct clicks.
    clicks: u32,
}

/// The log's queries, in order of first appearance, each with its documents in order of first
/// appearance; exact repeats counted apart.
struct Aggregate {
    queries: Vec<(String, Vec<(String, Pair)>)>,
    duplicates: usize,
    pairs: usize,
}

impl FeedbackRead {
    fn aggregate(&self) -> Aggregate {
        let mut queries: Vec<(String, Vec<(String, Pair)>)> = Vec::new();
        let mut query_index: HashMap<String, usize> = HashMap::new();
        let mut pair_index: HashMap<(usize, &str), usize> = HashMap::new();
        let mut seen: HashSet<(usize, &str, Signal, u64)> = HashSet::new();
        let mut duplicates = 0;
        for (position, record) in self.records.iter().enumerate() {
            let text = normalize_query(&record.query);
            let q = *query_index.entry(text.clone()).or_insert_with(|| {
                queries.push((text, Vec::new()));
                queries.len() - 1
            });
            if !seen.insert((q, record.doc.as_str(), record.signal, record.time)) {
                duplicates += 1;
                continue;
            }
            let docs = &mut queries[q].1;
            let d = *pair_index
                .entry((q, record.doc.as_str()))
                .or_insert_with(|| {
                    docs.push((record.doc.clone(), Pair::default()));
                    docs.len() - 1
                });
            let pair = &mut docs[d].1;
            match record.signal {
                Signal::Click => pair.clicks = pair.clicks.saturating_add(1),
                Signal::Grade(g) => {
                    let candidate = (record.time, position, g);
                    if pair
                        .grade
                        .is_none_or(|current| (candidate.0, candidate.1) > (current.0, current.1))
                    {
                        pair.grade = Some(candidate);
                    }
                }
            }
        }
        Aggregate {
            pairs: pair_index.len(),
            queries,
            duplicates,
        }
    }

    /// Counts of the records read.
    pub fn stats(&self) -> FeedbackStats {
        let aggregate = self.aggregate();
        let grades = self
            .records
            .iter()
            .filter(|r| matches!(r.signal, Signal::Grade(_)))
            .count();
        FeedbackStats {
            records: self.records.len(),
            grades,
            clicks: self.records.len() - grades,
            duplicates: aggregate.duplicates,
            distinct_queries: aggregate.queries.len(),
            distinct_pairs: aggregate.pairs,
            blank_lines: self.blank_lines,
            torn_tail_bytes: self.torn_tail_bytes,
            first_time: self.records.iter().map(|r| r.time).min(),
            last_time: self.records.iter().map(|r| r.time).max(),
        }
    }

    /// The records as judged queries under `policy`: an error if no (query, document) pair
    /// ends up judged (an empty log, or clicks all below `min_clicks`).
    pub fn to_training_data(&self, policy: &FeedbackPolicy) -> Result<TrainingData> {
        policy.check()?;
        let aggregate = self.aggregate();
        let queries: Vec<JudgedQuery> = aggregate
            .queries
            .into_iter()
            .filter_map(|(text, docs)| {
                let judgments: Vec<(String, i32)> =
                    docs.into_iter()
                        .filter_map(|(doc, pair)| match pair.grade {
                            // An explicit grade wins over any number of clicks.
                            Some((_, _, grade)) => Some((doc, grade)),
                            None => (pair.clicks >= policy.min_clicks)
                                .then_some((doc, policy.click_grade)),
                        })
                        .collect();
                (!judgments.is_empty()).then(|| JudgedQuery {
                    id: query_id(&text),
                    text,
                    judgments,
                })
            })
            .collect();
        if queries.is_empty() {
            return Err(Error::Invalid(if self.records.is_empty() {
                "no feedback recorded yet; add records (FeedbackLog::append, `ltre-cli feedback \
                 add` or `import`) before training from it"
                    .to_string()
            } else {
                format!(
                    "{} records, but no (query, document) pair has a grade or {} clicks; lower \
                     FeedbackPolicy::min_clicks or record more feedback",
                    self.records.len(),
                    policy.min_clicks
                )
            }));
        }
        Ok(TrainingData::new(queries))
    }
}

/// `queries` keyed like training data from feedback: texts normalised, ids [`query_id`],
/// queries with the same normalised text merged (first one's position, judgments
/// concatenated). Use it for held-out queries ([`DevSet::Queries`](crate::finetune::DevSet))
/// next to feedback training data, so that a held-out query is left out of training by id.
pub fn keyed_by_text(queries: &[JudgedQuery]) -> Vec<JudgedQuery> {
    let mut out: Vec<JudgedQuery> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for q in queries {
        let text = normalize_query(&q.text);
        match index.get(&text) {
            Some(&i) => out[i].judgments.extend(q.judgments.iter().cloned()),
            None => {
                index.insert(text.clone(), out.len());
                out.push(JudgedQuery {
                    id: query_id(&text),
                    text,
                    judgments: q.judgments.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::FeedbackRecord;
    use super::*;

    fn read(records: Vec<FeedbackRecord>) -> FeedbackRead {
        FeedbackRead {
            records,
            ..Default::default()
        }
    }

    #[test]
    fn grades_win_latest_grade_wins_clicks_need_min_clicks() {
        let log = read(vec![
            FeedbackRecord::click("red shoes", "d1").at(1),
            FeedbackRecord::click("red  shoes ", "d1").at(2),
            FeedbackRecord::click("red shoes", "d1").at(2), // exact repeat
            FeedbackRecord::grade("red shoes", "d2", 3).at(9),
            FeedbackRecord::grade("red shoes", "d2", 1).at(5), // older: loses
            FeedbackRecord::click("red shoes", "d2").at(10),
            FeedbackRecord::grade("red shoes", "d3", 2).at(4),
            FeedbackRecord::grade("red shoes", "d3", 0).at(4), // same time, later in the log
            FeedbackRecord::click("Red shoes", "d4").at(3),    // case kept: another query
        ]);
        let stats = log.stats();
        assert_eq!(
            (stats.records, stats.grades, stats.clicks, stats.duplicates),
            (9, 4, 5, 1)
        );
        assert_eq!((stats.distinct_queries, stats.distinct_pairs), (2, 4));
        let data = log.to_training_data(&FeedbackPolicy::default()).unwrap();
        let q = &data.queries()[0];
        assert_eq!(q.id, query_id("red shoes"));
        assert_eq!(q.text, "red shoes");
        let expected: Vec<(String, i32)> =
            vec![("d1".into(), 1), ("d2".into(), 3), ("d3".into(), 0)];
        assert_eq!(q.judgments, expected);
        assert_eq!(data.queries()[1].text, "Red shoes");
        // Two distinct clicks on d1; one on d4.
        let data = log
            .to_training_data(&FeedbackPolicy::default().min_clicks(2).click_grade(2))
            .unwrap();
        assert_eq!(data.queries().len(), 1);
        assert_eq!(data.queries()[0].judgments[0], ("d1".to_string(), 2));
        // Deterministic: the same records give the same data and hash.
        assert_eq!(
            log.to_training_data(&FeedbackPolicy::default()).unwrap(),
            log.to_training_data(&FeedbackPolicy::default()).unwrap()
        );
        let err = log
            .to_training_data(&FeedbackPolicy::default().min_clicks(0))
            .unwrap_err();
        assert!(err.to_string().contains("min_clicks"), "{err}");
    }

    #[test]
    fn empty_or_unjudged_logs_are_clear_errors() {
        let err = read(vec![])
            .to_training_data(&FeedbackPolicy::default())
            .unwrap_err();
        assert!(err.to_string().contains("no feedback recorded"), "{err}");
        let err = read(vec![FeedbackRecord::click("q", "d").at(1)])
            .to_training_data(&FeedbackPolicy::default().min_clicks(3))
            .unwrap_err();
        assert!(err.to_string().contains("3 clicks"), "{err}");
    }

    #[test]
    fn keyed_by_text_merges_equal_texts() {
        let keyed = keyed_by_text(&[
            JudgedQuery::new("1", "a  b").judge("d1", 1),
            JudgedQuery::new("2", "c").judge("d2", 1),
            JudgedQuery::new("3", " a b").judge("d3", 2),
        ]);
        assert_eq!(keyed.len(), 2);
        assert_eq!(keyed[0].id, query_id("a b"));
        assert_eq!(keyed[0].judgments.len(), 2);
    }
}
