//! Joining a [`VectorSet`] to a corpus: before `index_corpus` writes anything, the model's
//! fingerprint and the ids on either side without a partner; then each commit's documents with
//! their vectors.
use std::collections::HashSet;
use std::path::Path;

use ltre_core::data::{CorpusReader, Doc};
use ltre_core::manifest::Manifest;
use tantivy::TantivyDocument;

use super::{short, VectorSet};
use crate::corpus::CorpusReport;
use crate::corpus_resume::VectorTally;
use crate::error::{Error, Result};
use crate::writer::DenseIndexWriter;

/// How many example ids a join keeps.
const EXAMPLES: usize = 10;

/// Corpus ids without a vector and vector ids not in the corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VectorJoin {
    pub(crate) missing: usize,
    pub(crate) missing_examples: Vec<String>,
    pub(crate) extra: usize,
    pub(crate) extra_examples: Vec<String>,
}

/// Checks that `vectors` came from `model` (fingerprint and dimension) and joins them to the
/// ids of `corpus` (first occurrences, up to the first malformed line, which indexing reports
/// itself). With `allow_missing` false, corpus documents without a vector are an error naming
/// examples, so a dense index is never silently partial.
pub(crate) fn join_corpus(
    corpus: &Path,
    vectors: &VectorSet,
    model: &Path,
    allow_missing: bool,
) -> Result<VectorJoin> {
    let manifest = Manifest::load(model)?;
    if manifest.weights_sha256 != vectors.weights_sha256()
        || manifest.embedding_dim != vectors.dim()
    {
        return Err(Error::Invalid(format!(
            "{}: the vectors were embedded by another model ({}-d, weights sha256 {}) than --model {} ({}-d, weights sha256 {}); give the model that wrote them, or re-embed the corpus with this one",
            vectors.dir().display(),
            vectors.dim(),
            short(vectors.weights_sha256()),
            model.display(),
            manifest.embedding_dim,
            short(&manifest.weights_sha256)
        )));
    }
    let mut join = VectorJoin::default();
    let mut ids: HashSet<String> = HashSet::new();
    for doc in CorpusReader::open(corpus)? {
        let Ok(doc) = doc else { break };
        if ids.contains(&doc.id) {
            continue;
        }
        if vectors.get(&doc.id).is_none() {
            join.missing += 1;
            if join.missing_examples.len() < EXAMPLES {
                join.missing_examples.push(doc.id.clone());
            }
        }
        ids.insert(doc.id);
    }
    for id in vectors.ids() {
        if !ids.contains(id) {
            join.extra += 1;
            if join.extra_examples.len() < EXAMPLES {
                join.extra_examples.push(id.clone());
            }
        }
    }
    if join.missing > 0 && !allow_missing {
        let parts = vectors.missing_parts();
        let hint = if parts.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = parts.iter().map(ToString::to_string).collect();
            format!(
                " (shards {} are not in the directory: run `ltre-cli embed --corpus {} --out {} --shard I/N` for each)",
                names.join(", "),
                corpus.display(),
                vectors.dir().display()
            )
        };
        return Err(Error::Invalid(format!(
            "{} of the {} corpus documents have no vector in {}{hint}, e.g. {}; embed them, or allow indexing only the documents with a vector (`--skip-missing-vectors`); nothing was written",
            join.missing,
            ids.len(),
            vectors.dir().display(),
            join.missing_examples.join(", ")
        )));
    }
    Ok(join)
}

/// Adds `chunk` with the vectors of `vectors`, adding every added document to `tally`; a
/// document without a vector is left out and counted in `report` (the join before the run
/// refused it unless that was asked for). Returns (added, refused).
pub(crate) fn add_precomputed(
    writer: &DenseIndexWriter,
    vectors: &VectorSet,
    chunk: &[Doc],
    document: impl Fn(&Doc) -> TantivyDocument,
    tally: &mut VectorTally,
    report: &mut CorpusReport,
    progress: &mut impl FnMut(usize),
) -> Result<(usize, usize)> {
    let mut kept: Vec<(&Doc, &[f32])> = Vec::with_capacity(chunk.len());
    for doc in chunk {
        match vectors.get(&doc.id) {
            Some(vector) => kept.push((doc, vector)),
            None => {
                report.missing_vectors += 1;
                if report.missing_vector_examples.len() < EXAMPLES {
                    report.missing_vector_examples.push(doc.id.clone());
                }
            }
        }
    }
    let batch = kept
        .iter()
        .map(|(doc, vector)| (document(doc), Some(vector.to_vec())));
    let added = writer.add_documents(batch)?;
    let rejected: HashSet<usize> = added.rejected.iter().map(|(p, _)| *p).collect();
    for (position, (doc, vector)) in kept.iter().enumerate() {
        if !rejected.contains(&position) {
            tally.add(&doc.id, Some(vector));
        }
    }
    for (position, error) in &added.rejected {
        let id = kept.get(*position).map_or("?", |(d, _)| d.id.as_str());
        tracing::warn!("document `{id}` refused: {error}");
    }
    progress(chunk.len());
    Ok((added.added, added.rejected.len()))
}
