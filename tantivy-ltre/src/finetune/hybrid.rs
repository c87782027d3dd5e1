//! The BM25 side of hybrid-aware fine-tuning and of the fusion weight chosen on held-out
//! queries: each query's BM25 list over the index's lexical fields, as rows of the document
//! matrix (`ltre_core::hybrid`).
use std::collections::HashMap;

use ltre_core::hybrid::LexicalList;
use ltre_core::trainer::TrainQuery;
use tantivy::collector::TopDocs;
use tantivy::Searcher;

use super::TunableIndex;
use crate::error::{Error, Result};
use crate::lexical::bag_of_words;

/// The BM25 top `depth` of each query (by id), as `(row, score)`, best first. Hits without a
/// vector (no row) are skipped: the dense side cannot rank them either.
pub(super) fn lexical_lists<'q>(
    target: &TunableIndex,
    searcher: &Searcher,
    queries: impl IntoIterator<Item = &'q TrainQuery>,
    doc_rows: &HashMap<String, usize>,
    depth: usize,
) -> Result<HashMap<String, LexicalList>> {
    if target.lexical_fields.is_empty() {
        return Err(Error::Invalid(
            "hybrid-aware training and the fusion weight need the lexical fields BM25 searches: \
             give them with TunableIndex::with_lexical_fields"
                .into(),
        ));
    }
    let collector = TopDocs::with_limit(depth.max(1)).order_by_score();
    let mut out = HashMap::new();
    for q in queries {
        if out.contains_key(&q.id) {
            continue;
        }
        let query = bag_of_words(&target.index, &target.lexical_fields, &q.text)?;
        let hits = searcher.search(&*query, &collector)?;
        let mut list = Vec::with_capacity(hits.len());
        for (score, address) in hits {
            if let Some(&row) = doc_rows.get(&target.id_field.get(searcher, address)?) {
                list.push((row, score));
            }
        }
        out.insert(q.id.clone(), list);
    }
    Ok(out)
}
