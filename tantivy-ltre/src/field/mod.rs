//! The dense vector field: a Tantivy custom field plus the [`SegmentPlugin`] that stores its
//! vectors inside each segment.
//!
//! - this module: the schema declaration ([`add_dense_field`], [`DenseFieldOptions`]), the
//!   [`DenseField`] handle and the checks and encoding of one vector;
//! - [`format`](mod@format): the per-segment `.ltrevec` component (layout, checksums, reader
//!   [`SegmentVectors`] and its integrity checks);
//! - `write`: the writer of the component;
//! - `plugin`: the [`SegmentPlugin`] that writes the component at flush and merge.
//!
//! # Integrity
//!
//! [`DenseField::segment_vectors`] runs the cheap check of [`format`](mod@format) on every open; a
//! missing, truncated or damaged file is one `DataCorruption` error naming the field, the
//! segment, the file and the remedy (`ltre-cli verify`, re-index or restore). The full check
//! is [`crate::verify::verify_index`].
//!
//! # Limits
//!
//! One dense field per index. Index sorting (`IndexSettings::sort_by_field`) is refused: Tantivy
//! does not expose its doc-id permutation to plugins.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tantivy::directory::error::OpenReadError;
use tantivy::directory::{FileSlice, OwnedBytes};
use tantivy::error::DataCorruption;
use tantivy::index::{SegmentComponent, SegmentId};
use tantivy::schema::{Field, FieldType, Schema, SchemaBuilder};
use tantivy::{
    DocAddress, Index, Searcher, SegmentPlugin, SegmentReader, TantivyDocument, TantivyError,
};

use crate::ann::{self, AnnCache, AnnOptions};
use crate::error::{Error, Result, VectorError};

pub mod format;
mod plugin;
mod write;

pub use format::{SegmentVectors, VECTORS_EXTENSION};

/// The custom type name of a dense field in a Tantivy schema.
pub const DENSE_TYPE_NAME: &str = "ltre.dense";

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
    /// The bytes of each opened segment's vectors, held so that Tantivy's mmap cache (weak
    /// references by path) hands every later open the same, already populated mapping: a
    /// fresh mapping per query spent more time in page faults than in the scan (5x at 100k
    /// vectors). Entries of segments merged away are dropped at the next new segment's open.
    open_vectors: Mutex<HashMap<SegmentId, OwnedBytes>>,
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
                options,
                ann_cache: AnnCache::new(name.clone()),
                open_vectors: Mutex::default(),
                name,
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
        Arc::new(plugin::DensePlugin::new(self.clone()))
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

    /// Opens the vectors of a segment (zero copy on a memory-mapped directory) after the cheap
    /// integrity check (see [`format`](mod@format)). A missing, truncated or damaged file gives one
    /// `DataCorruption` error naming the segment, the file and what to do.
    pub fn segment_vectors(&self, reader: &SegmentReader) -> tantivy::Result<SegmentVectors> {
        let segment = reader.segment_id();
        let opened = open_component(reader, VECTORS_EXTENSION).and_then(|bytes| {
            self.keep_open(reader, &bytes);
            SegmentVectors::from_bytes(bytes, self.dim(), Some(reader.max_doc()))
        });
        opened.map_err(|what| self.damaged(segment, VECTORS_EXTENSION, &what))
    }

    /// Holds `bytes` (a reference-counted handle, no copy) while the segment is searchable.
    fn keep_open(&self, reader: &SegmentReader, bytes: &OwnedBytes) {
        // A poisoned lock only loses the speed-up, never a result.
        let Ok(mut open) = self.inner.open_vectors.lock() else {
            return;
        };
        let id = reader.segment_id();
        if open.contains_key(&id) {
            return;
        }
        if let Ok(alive) = reader.index().searchable_segment_ids() {
            open.retain(|id, _| alive.contains(id));
        }
        open.insert(id, bytes.clone());
    }

    /// The error of a damaged component file of `segment`.
    pub(crate) fn damaged(&self, segment: SegmentId, extension: &str, what: &str) -> TantivyError {
        damaged(self.name(), segment, extension, what)
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

/// The one error for a damaged component file: the field, the segment, the file, what is wrong
/// and what to do.
pub(crate) fn damaged(
    field: &str,
    segment: SegmentId,
    extension: &str,
    what: &str,
) -> TantivyError {
    let file = format!("{}.{extension}", segment.uuid_string());
    TantivyError::DataCorruption(DataCorruption::new(
        file.clone().into(),
        format!(
            "dense field `{field}`, segment {}, file {file}: {what}; {}",
            segment.short_uuid_string(),
            format::REMEDY
        ),
    ))
}

/// The body of a segment's component file (Tantivy's footer removed); `Err` says, in words,
/// why not. Tantivy reports a truncated file or a damaged footer as a footer error ("magic byte
/// mismatch ... tantivy 0.15"): translated here, since the footer is the file's last bytes.
pub(crate) fn open_component(
    reader: &SegmentReader,
    extension: &str,
) -> std::result::Result<OwnedBytes, String> {
    read_component(reader.open_read(SegmentComponent::Custom(extension.to_string())))
}

/// [`open_component`] from the result of a `Segment::open_read` or `SegmentReader::open_read`.
pub(crate) fn read_component(
    opened: std::result::Result<FileSlice, OpenReadError>,
) -> std::result::Result<OwnedBytes, String> {
    let slice = opened.map_err(|e| match e {
        OpenReadError::FileDoesNotExist(_) => "the file is missing".to_string(),
        OpenReadError::IoError { io_error, .. } => match io_error.kind() {
            // Tantivy's own text ("use tantivy 0.15 or above") would mislead: not repeated.
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                "the file is truncated or its end (Tantivy's footer) is damaged".to_string()
            }
            _ => format!("cannot read the file ({io_error})"),
        },
        other => format!("cannot open the file ({other})"),
    })?;
    slice
        .read_bytes()
        .map_err(|e| format!("cannot read the file ({e})"))
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

pub(crate) fn decode_vector(
    bytes: &[u8],
    dim: usize,
    out: &mut Vec<f32>,
) -> Result<(), VectorError> {
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
