//! The [`SegmentPlugin`] of the dense field: buffers the vectors of a segment being indexed,
//! writes its components at flush and rewrites them at merge.
use std::any::Any;
use std::collections::BTreeMap;

use tantivy::indexer::doc_id_mapping::{DocIdMapping, MappingType};
use tantivy::schema::document::{ErasedDocument, ErasedValue};
use tantivy::schema::Schema;
use tantivy::space_usage::ComponentSpaceUsage;
use tantivy::{
    DocId, PluginMergeContext, PluginWriter, PluginWriterContext, Segment, SegmentPlugin,
    SegmentReader, TantivyError,
};

use super::format::{write_segment, VectorsWriter, VECTORS_EXTENSION};
use super::{decode_vector, DenseField};
use crate::ann;

/// The [`SegmentPlugin`] of the dense field.
pub(super) struct DensePlugin {
    dense: DenseField,
}

impl DensePlugin {
    pub(super) fn new(dense: DenseField) -> DensePlugin {
        DensePlugin { dense }
    }
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
        // The merged file gets a fresh checksum: damaged rows must not be laundered into it.
        // Hashing the rows costs about what copying them does.
        for (reader, source) in ctx.readers.iter().zip(&sources) {
            let problems = source.check_payload();
            if !problems.is_empty() {
                return Err(self.dense.damaged(
                    reader.segment_id(),
                    VECTORS_EXTENSION,
                    &format!("merge refused: {}", problems.join("; ")),
                ));
            }
        }
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
        self.vectors.mem_usage()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
