//! The dense vector field: a Tantivy custom field plus the [`SegmentPlugin`] that stores its
//! vectors inside each segment.
//!
//! # On disk
//!
//! Every segment gets a `.ltrevec` component (and a `.ltreann` one, see [`crate::ann`]):
//!
//! ```text
//! header   32 bytes   b"LTREDVEC", version u32, dim u32, max_doc u32, num_present u32, 8 reserved
//! bitmap   8 * ceil(max_doc / 64) bytes: u64 LE words, bit d set = doc d has a vector
//! rows     max_doc * dim f32 LE, in doc-id order; docs without a vector hold zeros
//! ```
//!
//! Rows start at a multiple of 8 bytes, so on a memory-mapped directory they are read in place
//! (zero copy) as `&[f32]`. The components are written when a segment is flushed, rewritten with
//! the doc-id remapping of a merge (deleted documents dropped), and garbage-collected with their
//! segment by Tantivy, like its own components.
//!
//! # Limits
//!
//! One dense field per index. Index sorting (`IndexSettings::sort_by_field`) is refused: Tantivy
//! does not expose its doc-id permutation to plugins.
use std::any::Any;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::directory::{OwnedBytes, TerminatingWrite};
use tantivy::indexer::doc_id_mapping::{DocIdMapping, MappingType};
use tantivy::schema::document::{ErasedDocument, ErasedValue};
use tantivy::schema::{Field, FieldType, Schema, SchemaBuilder};
use tantivy::space_usage::ComponentSpaceUsage;
use tantivy::{
    DocAddress, DocId, Index, PluginMergeContext, PluginWriter, PluginWriterContext, Searcher,
    Segment, SegmentPlugin, SegmentReader, TantivyDocument, TantivyError,
};

use crate::ann::{self, AnnCache, AnnOptions};
use crate::error::{Error, Result, VectorError};

/// The custom type name of a dense field in a Tantivy schema.
pub const DENSE_TYPE_NAME: &str = "ltre.dense";
/// Extension of the per-segment vector component.
pub const VECTORS_EXTENSION: &str = "ltrevec";

const MAGIC: &[u8; 8] = b"LTREDVEC";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;

/// Options of a dense field, stored in the schema (declared once per index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseFieldOptions {
    /// Dimension of every vector.
    pub dim: usize,
    /// Whether every document must carry a vector ([`VectorError::Missing`] otherwise).
    #[serde(default)]
    pub required: bool,
    /// Approximate index built per segment once it is large enough; `None` = exact scan only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ann: Option<AnnOptions>,
}

impl DenseFieldOptions {
    /// Options for vectors of `dim` dimensions, optional per document, exact search.
    pub fn new(dim: usize) -> DenseFieldOptions {
        DenseFieldOptions {
            dim,
            required: false,
            ann: None,
        }
    }

    /// Requires a vector on every document.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Builds a Faiss index for segments of at least `ann.min_docs` vectors.
    pub fn with_ann(mut self, ann: AnnOptions) -> Self {
        self.ann = Some(ann);
        self
    }
}

/// Declares a dense field in a schema being built.
///
/// ```
/// use tantivy::schema::{Schema, TEXT};
/// use tantivy_ltre::{add_dense_field, DenseFieldOptions};
/// let mut builder = Schema::builder();
/// builder.add_text_field("text", TEXT);
/// let embedding = add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(4));
/// let schema = builder.build();
/// assert_eq!(schema.get_field("embedding").unwrap(), embedding);
/// ```
pub fn add_dense_field(
    builder: &mut SchemaBuilder,
    name: &str,
    options: &DenseFieldOptions,
) -> Field {
    let params = serde_json::to_value(options).unwrap_or(serde_json::Value::Null);
    builder.add_custom_field(name, DENSE_TYPE_NAME, params)
}

/// A handle on the dense field of an index: validates and attaches vectors, provides the
/// segment plugin and reads the vectors of a segment. Cheap to clone.
#[derive(Clone)]
pub struct DenseField {
    inner: Arc<Inner>,
}

struct Inner {
    field: Field,
    name: String,
    options: DenseFieldOptions,
    ann_cache: AnnCache,
}

impl std::fmt::Debug for DenseField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseField")
            .field("name", &self.inner.name)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl DenseField {
    /// Finds the dense field of a schema (exactly one field of type [`DENSE_TYPE_NAME`]).
    pub fn from_schema(schema: &Schema) -> Result<DenseField> {
        let mut found = schema
            .fields()
            .filter_map(|(field, entry)| match entry.field_type() {
                FieldType::Custom(options) if options.type_name() == DENSE_TYPE_NAME => {
                    Some((field, entry.name().to_string(), options.params().clone()))
                }
                _ => None,
            });
        let Some((field, name, params)) = found.next() else {
            return Err(Error::Schema(
                "the schema has no dense field; declare one with `tantivy_ltre::add_dense_field`"
                    .into(),
            ));
        };
        if let Some((_, other, _)) = found.next() {
            return Err(Error::Schema(format!(
                "dense fields `{name}` and `{other}`: an index holds at most one dense field"
            )));
        }
        let options: DenseFieldOptions = serde_json::from_value(params)
            .map_err(|e| Error::Schema(format!("dense field `{name}`: bad options ({e})")))?;
        if options.dim == 0 {
            return Err(Error::Schema(format!("dense field `{name}`: dimension 0")));
        }
        Ok(DenseField {
            inner: Arc::new(Inner {
                field,
                name,
                options,
                ann_cache: AnnCache::default(),
            }),
        })
    }

    /// Attaches the dense plugin to an index opened with `Index::open*` (plugins are not
    /// persisted by Tantivy) and returns the field handle. Call it before creating a writer or a
    /// reader.
    pub fn register(index: &mut Index) -> Result<DenseField> {
        let dense = DenseField::from_schema(&index.schema())?;
        index.register_plugin(dense.plugin());
        Ok(dense)
    }

    /// The segment plugin to pass to `IndexBuilder::register_plugin` when creating an index.
    pub fn plugin(&self) -> Arc<dyn SegmentPlugin> {
        Arc::new(DensePlugin {
            dense: self.clone(),
        })
    }

    /// The Tantivy field.
    pub fn field(&self) -> Field {
        self.inner.field
    }

    /// The field's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.inner.options.dim
    }

    /// The field's options.
    pub fn options(&self) -> &DenseFieldOptions {
        &self.inner.options
    }

    pub(crate) fn ann_cache(&self) -> &AnnCache {
        &self.inner.ann_cache
    }

    /// Checks a document's vector: dimension, finiteness, presence when required.
    pub fn validate(&self, vector: Option<&[f32]>) -> Result<(), VectorError> {
        match vector {
            None if self.inner.options.required => Err(VectorError::Missing),
            None => Ok(()),
            Some(v) => validate_vector(v, self.dim()),
        }
    }

    /// Validates `vector` and attaches it to `doc`.
    pub fn set_vector(&self, doc: &mut TantivyDocument, vector: &[f32]) -> Result<(), VectorError> {
        validate_vector(vector, self.dim())?;
        doc.add_custom(self.field(), &encode_vector(vector));
        Ok(())
    }

    /// Opens the vectors of a segment (zero copy on a memory-mapped directory).
    pub fn segment_vectors(&self, reader: &SegmentReader) -> tantivy::Result<SegmentVectors> {
        let bytes = reader
            .open_read(tantivy::index::SegmentComponent::Custom(
                VECTORS_EXTENSION.to_string(),
            ))?
            .read_bytes()?;
        SegmentVectors::parse(bytes, self.dim())
    }

    /// The segment's approximate index, if it has one (loaded once, then cached).
    pub fn ann_segment(&self, reader: &SegmentReader) -> Result<Option<Arc<ann::AnnSegment>>> {
        self.inner.ann_cache.get(reader)
    }

    /// The stored vector of a document, if it has one.
    pub fn vector(&self, searcher: &Searcher, address: DocAddress) -> Result<Option<Vec<f32>>> {
        let reader = searcher.segment_reader(address.segment_ord);
        let vectors = self.segment_vectors(reader)?;
        Ok(vectors.vector(address.doc_id).map(<[f32]>::to_vec))
    }
}

/// Checks the dimension and that every component is finite.
pub fn validate_vector(vector: &[f32], dim: usize) -> Result<(), VectorError> {
    if vector.len() != dim {
        return Err(VectorError::WrongDimension {
            expected: dim,
            got: vector.len(),
        });
    }
    match vector.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(VectorError::NotFinite {
            index,
            value: vector[index],
        }),
        None => Ok(()),
    }
}

/// The custom-field payload of a vector: its components as little-endian f32.
pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8], dim: usize, out: &mut Vec<f32>) -> Result<(), VectorError> {
    if bytes.len() != dim * 4 {
        return Err(VectorError::BadPayload {
            bytes: bytes.len(),
            dim,
        });
    }
    let start = out.len();
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    if let Err(e) = validate_vector(&out[start..], dim) {
        out.truncate(start);
        return Err(e);
    }
    Ok(())
}

/// The vectors of one segment.
pub struct SegmentVectors {
    dim: usize,
    max_doc: u32,
    num_present: u32,
    present: Vec<u64>,
    rows: Rows,
}

enum Rows {
    /// The component's bytes, viewed in place as f32 (aligned, little-endian target).
    Mapped(OwnedBytes),
    /// A copy, when the bytes are not 4-byte aligned or the target is big-endian.
    Owned(Vec<f32>),
}

fn as_f32(bytes: &[u8]) -> Option<&[f32]> {
    let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<f32>()) == 0;
    if cfg!(target_endian = "little") && aligned && bytes.len().is_multiple_of(4) {
        // SAFETY: the pointer is aligned for f32, the length is a whole number of f32, every bit
        // pattern is a valid f32, and the slice borrows `bytes` so it cannot outlive them.
        Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) })
    } else {
        None
    }
}

fn corrupt(message: String) -> TantivyError {
    TantivyError::DataCorruption(tantivy::error::DataCorruption::comment_only(message))
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl SegmentVectors {
    fn parse(bytes: OwnedBytes, dim: usize) -> tantivy::Result<SegmentVectors> {
        let data = bytes.as_slice();
        if data.len() < HEADER_LEN || &data[..8] != MAGIC {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component: bad header"
            )));
        }
        let version = read_u32(data, 8);
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component: format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let file_dim = read_u32(data, 12) as usize;
        if file_dim != dim {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component holds {file_dim}-d vectors, the schema says {dim}"
            )));
        }
        let max_doc = read_u32(data, 16);
        let num_present = read_u32(data, 20);
        let words = (max_doc as usize).div_ceil(64);
        let rows_at = HEADER_LEN + 8 * words;
        let expected = rows_at + max_doc as usize * dim * 4;
        if data.len() != expected {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component: {} bytes, expected {expected} for {max_doc} docs",
                data.len()
            )));
        }
        let present = data[HEADER_LEN..rows_at]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let row_bytes = bytes.slice(rows_at..expected);
        let rows = if as_f32(row_bytes.as_slice()).is_some() {
            Rows::Mapped(row_bytes)
        } else {
            Rows::Owned(
                row_bytes
                    .as_slice()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        };
        Ok(SegmentVectors {
            dim,
            max_doc,
            num_present,
            present,
            rows,
        })
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Documents in the segment (with or without a vector, deleted or not).
    pub fn max_doc(&self) -> u32 {
        self.max_doc
    }

    /// Documents that have a vector (deleted ones included).
    pub fn num_present(&self) -> u32 {
        self.num_present
    }

    /// Whether the vectors are read in place from the segment file (no copy).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.rows, Rows::Mapped(_))
    }

    /// All rows, `max_doc * dim` floats in doc-id order (zeros for documents without a vector).
    pub fn rows(&self) -> &[f32] {
        match &self.rows {
            Rows::Mapped(bytes) => as_f32(bytes.as_slice()).unwrap_or(&[]),
            Rows::Owned(rows) => rows,
        }
    }

    /// Whether `doc` has a vector.
    #[inline]
    pub fn has_vector(&self, doc: DocId) -> bool {
        self.present
            .get(doc as usize / 64)
            .is_some_and(|w| w & (1u64 << (doc % 64)) != 0)
    }

    /// The vector of `doc`, if it has one.
    pub fn vector(&self, doc: DocId) -> Option<&[f32]> {
        if !self.has_vector(doc) {
            return None;
        }
        let start = doc as usize * self.dim;
        self.rows().get(start..start + self.dim)
    }
}

/// Builds a segment's `.ltrevec` component from rows given in doc-id order.
pub(crate) struct VectorsWriter {
    dim: usize,
    rows: Vec<f32>,
    present: Vec<u64>,
    max_doc: usize,
}

impl VectorsWriter {
    pub(crate) fn new(dim: usize) -> VectorsWriter {
        VectorsWriter {
            dim,
            rows: Vec::new(),
            present: Vec::new(),
            max_doc: 0,
        }
    }

    pub(crate) fn push(&mut self, vector: Option<&[f32]>) {
        let doc = self.max_doc;
        if doc.is_multiple_of(64) {
            self.present.push(0);
        }
        match vector {
            Some(v) => {
                self.rows.extend_from_slice(v);
                self.present[doc / 64] |= 1u64 << (doc % 64);
            }
            None => self.rows.resize(self.rows.len() + self.dim, 0.0),
        }
        self.max_doc += 1;
    }

    fn is_present(&self, doc: usize) -> bool {
        self.present[doc / 64] & (1u64 << (doc % 64)) != 0
    }

    pub(crate) fn write(self, segment: &Segment, ann: Option<&AnnOptions>) -> tantivy::Result<()> {
        let dim = self.dim;
        write_segment(segment, dim, ann, || {
            self.rows
                .chunks_exact(dim)
                .enumerate()
                .map(|(doc, row)| self.is_present(doc).then_some(row))
        })
    }
}

/// Writes a segment's `.ltrevec` and `.ltreann` components. `rows` yields, in doc-id order, each
/// document's vector or `None`; it is called once per pass (presence, rows, approximate index),
/// so a merge streams from the source segments instead of holding the merged rows in memory.
fn write_segment<'a, I, F>(
    segment: &Segment,
    dim: usize,
    ann: Option<&AnnOptions>,
    rows: F,
) -> tantivy::Result<()>
where
    I: Iterator<Item = Option<&'a [f32]>>,
    F: Fn() -> I,
{
    let mut present: Vec<u64> = Vec::new();
    let (mut max_doc, mut num_present) = (0u32, 0u32);
    for row in rows() {
        let doc = max_doc as usize;
        if doc.is_multiple_of(64) {
            present.push(0);
        }
        if row.is_some() {
            present[doc / 64] |= 1u64 << (doc % 64);
            num_present += 1;
        }
        max_doc += 1;
    }

    let component = tantivy::index::SegmentComponent::Custom(VECTORS_EXTENSION.to_string());
    let mut out = segment.open_write(component)?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(dim as u32).to_le_bytes());
    header[16..20].copy_from_slice(&max_doc.to_le_bytes());
    header[20..24].copy_from_slice(&num_present.to_le_bytes());
    out.write_all(&header)?;
    for word in &present {
        out.write_all(&word.to_le_bytes())?;
    }
    let zeros = vec![0u8; dim * 4];
    let mut buffer = Vec::with_capacity(dim * 4);
    for row in rows() {
        match row {
            Some(row) => {
                buffer.clear();
                buffer.extend(row.iter().flat_map(|x| x.to_le_bytes()));
                out.write_all(&buffer)?;
            }
            None => out.write_all(&zeros)?,
        }
    }
    out.terminate()?;

    let built = match ann {
        Some(options) if num_present as usize >= options.min_docs => {
            let mut vectors = Vec::with_capacity(num_present as usize * dim);
            let mut docs = Vec::with_capacity(num_present as usize);
            for (doc, row) in rows().enumerate() {
                if let Some(row) = row {
                    vectors.extend_from_slice(row);
                    docs.push(doc as DocId);
                }
            }
            match ann::build(options, dim, &vectors) {
                Ok(bytes) => Some((docs, bytes)),
                Err(e) => {
                    // The exact scan still serves this segment; a failed build must not lose it.
                    tracing::warn!(
                        "approximate index not built for segment {}: {e}",
                        segment.id().short_uuid_string()
                    );
                    None
                }
            }
        }
        _ => None,
    };
    ann::write_component(
        segment,
        built
            .as_ref()
            .map(|(docs, bytes)| (docs.as_slice(), bytes.as_slice())),
    )
}

/// The [`SegmentPlugin`] of the dense field.
struct DensePlugin {
    dense: DenseField,
}

impl SegmentPlugin for DensePlugin {
    fn extensions(&self) -> &[&str] {
        &[VECTORS_EXTENSION, ann::ANN_EXTENSION]
    }

    fn create_writer(&self, _ctx: &PluginWriterContext) -> tantivy::Result<Box<dyn PluginWriter>> {
        Ok(Box::new(DensePluginWriter {
            dense: self.dense.clone(),
            vectors: VectorsWriter::new(self.dense.dim()),
        }))
    }

    fn merge(&self, ctx: PluginMergeContext) -> tantivy::Result<()> {
        if ctx.doc_id_mapping.mapping_type() == MappingType::Shuffled {
            return Err(unsupported_sorting());
        }
        // Stacked mappings concatenate the alive documents of the readers in order; the readers
        // already carry the merge's alive sets.
        let sources = ctx
            .readers
            .iter()
            .map(|reader| self.dense.segment_vectors(reader))
            .collect::<tantivy::Result<Vec<_>>>()?;
        write_segment(
            ctx.target_segment,
            self.dense.dim(),
            self.dense.options().ann.as_ref(),
            || {
                ctx.readers
                    .iter()
                    .zip(&sources)
                    .flat_map(|(reader, source)| {
                        reader.doc_ids_alive().map(move |doc| source.vector(doc))
                    })
            },
        )
    }

    fn space_usage(
        &self,
        reader: &SegmentReader,
    ) -> tantivy::Result<BTreeMap<String, ComponentSpaceUsage>> {
        let mut usage = BTreeMap::new();
        for ext in self.extensions() {
            let file =
                reader.open_read(tantivy::index::SegmentComponent::Custom(ext.to_string()))?;
            usage.insert(
                ext.to_string(),
                ComponentSpaceUsage::Basic(tantivy::HasLen::len(&file).into()),
            );
        }
        Ok(usage)
    }
}

fn unsupported_sorting() -> TantivyError {
    TantivyError::InvalidArgument(
        "the ltre dense field does not support index sorting (sort_by_field) or manual doc-id mappings; \
         create the index without them"
            .into(),
    )
}

struct DensePluginWriter {
    dense: DenseField,
    vectors: VectorsWriter,
}

impl PluginWriter for DensePluginWriter {
    fn add_document(
        &mut self,
        _doc_id: DocId,
        doc: &dyn ErasedDocument,
        _schema: &Schema,
    ) -> tantivy::Result<()> {
        let field = self.dense.field();
        let dim = self.dense.dim();
        let mut payload = None;
        for (f, value) in doc.erased_fields() {
            if f == field {
                if let ErasedValue::Leaf(leaf) = value {
                    payload = leaf.as_custom();
                }
            }
        }
        let Some(bytes) = payload else {
            self.vectors.push(None);
            return Ok(());
        };
        // DenseIndexWriter validates before Tantivy sees the document; this guards documents
        // added to the IndexWriter directly.
        let mut row = Vec::with_capacity(dim);
        decode_vector(bytes, dim, &mut row).map_err(|e| {
            TantivyError::InvalidArgument(format!("dense field `{}`: {e}", self.dense.name()))
        })?;
        self.vectors.push(Some(&row));
        Ok(())
    }

    fn serialize(
        self: Box<Self>,
        segment: &Segment,
        doc_id_map: Option<&DocIdMapping>,
    ) -> tantivy::Result<()> {
        if doc_id_map.is_some() {
            return Err(unsupported_sorting());
        }
        let ann = self.dense.options().ann.clone();
        self.vectors.write(segment, ann.as_ref())
    }

    fn mem_usage(&self) -> usize {
        self.vectors.rows.capacity() * 4 + self.vectors.present.capacity() * 8
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
