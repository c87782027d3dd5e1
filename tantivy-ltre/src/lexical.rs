//! The lexical side shared by search, evaluation and training: a bag-of-words BM25 query built
//! from free text, and the external id of a hit.
//!
//! [`bag_of_words`] tokenises the text with each field's own analyzer and makes one `SHOULD`
//! term clause per token and field, so any text is a valid query (no query syntax to escape)
//! and the score is Tantivy's BM25 summed over fields. [`IdField`] reads a document's external
//! id from a `STRING | FAST` field.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tantivy::collector::TopDocs;
//! use tantivy::schema::{Schema, FAST, STRING, TEXT};
//! use tantivy::{doc, Index, IndexWriter};
//! use tantivy_ltre::lexical::{bag_of_words, IdField};
//!
//! let mut builder = Schema::builder();
//! let id = builder.add_text_field("id", STRING | FAST);
//! let body = builder.add_text_field("body", TEXT);
//! let index = Index::create_in_ram(builder.build());
//! let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000)?;
//! writer.add_document(doc!(id => "d1", body => "dense retrieval in Rust"))?;
//! writer.add_document(doc!(id => "d2", body => "cooking pasta"))?;
//! writer.commit()?;
//! let searcher = index.reader()?.searcher();
//! let query = bag_of_words(&index, &[body], "Retrieval (dense) AND?")?;
//! let hits = searcher.search(&query, &TopDocs::with_limit(10).order_by_score())?;
//! assert_eq!(IdField::new(&index.schema(), "id")?.get(&searcher, hits[0].1)?, "d1");
//! # Ok(())
//! # }
//! ```
use tantivy::columnar::StrColumn;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema};
use tantivy::tokenizer::TokenStream;
use tantivy::{DocAddress, DocId, Index, Searcher, SegmentReader, Term};

use crate::error::{Error, Result};

/// A BM25 bag-of-words query: one `SHOULD` term clause per token of `text` and field in
/// `fields`, each field tokenised by its own analyzer. Text without any token matches nothing.
pub fn bag_of_words(index: &Index, fields: &[Field], text: &str) -> Result<Box<dyn Query>> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for field in fields {
        let mut tokenizer = index.tokenizer_for_field(*field)?;
        let mut stream = tokenizer.token_stream(text);
        while stream.advance() {
            let term = Term::from_field_text(*field, &stream.token().text);
            clauses.push((
                Occur::Should,
                Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
            ));
        }
    }
    Ok(Box::new(BooleanQuery::new(clauses)))
}

/// The field that holds each document's external id (a `STRING | FAST` text field).
#[derive(Debug, Clone)]
pub struct IdField {
    name: String,
    field: Field,
}

impl IdField {
    /// The id field `name` of `schema`; refuses a missing field or one that is not a fast
    /// text field, naming the field.
    pub fn new(schema: &Schema, name: &str) -> Result<IdField> {
        let field = schema
            .get_field(name)
            .map_err(|_| Error::Schema(format!("no id field `{name}` in the schema")))?;
        let entry = schema.get_field_entry(field);
        if !entry.is_fast() || !matches!(entry.field_type(), tantivy::schema::FieldType::Str(_)) {
            return Err(Error::Schema(format!(
                "id field `{name}` must be a text field declared STRING | FAST"
            )));
        }
        Ok(IdField {
            name: name.to_string(),
            field,
        })
    }

    /// The Tantivy field.
    pub fn field(&self) -> Field {
        self.field
    }

    /// The field's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id of the document at `address` (empty if it has none).
    pub fn get(&self, searcher: &Searcher, address: DocAddress) -> Result<String> {
        let column = id_column(searcher.segment_reader(address.segment_ord), &self.name)?;
        id_of(&column, address.doc_id)
    }
}

/// The id column (`STRING | FAST` field `name`) of one segment: the one way ids are read, by
/// [`IdField::get`], the document-vector checksum and the per-commit tally.
pub(crate) fn id_column(segment: &SegmentReader, name: &str) -> Result<StrColumn> {
    segment
        .fast_fields()
        .str(name)?
        .ok_or_else(|| Error::Schema(format!("the id field `{name}` is not a fast text field")))
}

/// The id of `doc` in a segment's id column (empty if it has none).
pub(crate) fn id_of(column: &StrColumn, doc: DocId) -> Result<String> {
    let mut out = String::new();
    if let Some(ord) = column.term_ords(doc).next() {
        column
            .ord_to_str(ord, &mut out)
            .map_err(tantivy::TantivyError::from)?;
    }
    Ok(out)
}
