//! Reading and checking a directory of Parquet vector shards: [`VectorSet::load`].
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{keys, short, Shard, FORMAT_VERSION, ID_COLUMN, VECTOR_COLUMN};
use crate::error::{Error, Result};

/// What to do about a file that is not a readable shard.
const DAMAGED_HINT: &str = "it is damaged or was not written completely: delete it and rerun the command that wrote it (`ltre-cli embed ... --shard i/n` skips the shards already written)";

/// The metadata of one shard file (its footer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) weights_sha256: String,
    pub(crate) dim: usize,
    pub(crate) model: String,
    pub(crate) rows: usize,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        bad(
            path,
            format!("not a readable Parquet file ({e}); {DAMAGED_HINT}"),
        )
    })
}

fn footer_of(path: &Path, builder: &ParquetRecordBatchReaderBuilder<File>) -> Result<Footer> {
    let file_metadata = builder.metadata().file_metadata();
    let pairs: HashMap<&str, &str> = file_metadata
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|kv| Some((kv.key.as_str(), kv.value.as_deref()?)))
                .collect()
        })
        .unwrap_or_default();
    let get = |key: &str| {
        pairs.get(key).copied().ok_or_else(|| {
            bad(
                path,
                format!("no `{key}` in the file metadata: not a vector shard of ltre (write shards with `ltre-cli embed --corpus C --out DIR` or distributed/embed_ray.py)"),
            )
        })
    };
    let version = get(keys::FORMAT_VERSION)?;
    if version != FORMAT_VERSION.to_string() {
        return Err(bad(
            path,
            format!("`{}` is {version}; this ltre reads format {FORMAT_VERSION}: rewrite the shards with this ltre", keys::FORMAT_VERSION),
        ));
    }
    let weights_sha256 = get(keys::WEIGHTS_SHA256)?.to_string();
    let dim = get(keys::DIM)?;
    let dim = dim
        .parse::<usize>()
        .ok()
        .filter(|d| *d > 0)
        .ok_or_else(|| {
            bad(
                path,
                format!("`{}` is `{dim}`, not a positive integer", keys::DIM),
            )
        })?;
    let rows =
        usize::try_from(file_metadata.num_rows()).map_err(|_| bad(path, "negative row count"))?;
    Ok(Footer {
        weights_sha256,
        dim,
        model: pairs.get(keys::MODEL).copied().unwrap_or("").to_string(),
        rows,
    })
}

/// The metadata of the shard file at `path` (its footer only; the rows are not read).
pub(crate) fn read_footer(path: &Path) -> Result<Footer> {
    footer_of(path, &open(path)?)
}

/// Every vector of a directory of shards, checked: one model fingerprint and dimension across
/// the files, no id twice, every vector `dim` finite floats.
///
/// Holds all vectors in memory (`4 * dim` bytes each plus the id; SciFact's 5,183 vectors of
/// 384 dimensions: 8 MB).
#[derive(Debug, Clone)]
pub struct VectorSet {
    dir: PathBuf,
    files: Vec<PathBuf>,
    weights_sha256: String,
    dim: usize,
    model: String,
    ids: Vec<String>,
    rows: HashMap<String, usize>,
    values: Vec<f32>,
    missing_parts: Vec<Shard>,
    /// The file number of each row, to name both files of a duplicate id.
    row_file: Vec<u32>,
}

impl VectorSet {
    /// Reads every `*.parquet` file of `dir` (names starting with `.`, a writer's temporary
    /// files, are ignored). Errors name the file and, for a bad row, the row and id.
    pub fn load(dir: &Path) -> Result<VectorSet> {
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: no such directory of vector shards; write them with `ltre-cli embed --corpus CORPUS --out {}`",
                dir.display(),
                dir.display()
            )));
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| super::is_shard_file(p))
            .collect();
        files.sort();
        let Some(first) = files.first() else {
            return Err(Error::Invalid(format!(
                "{}: holds no .parquet file; write the shards with `ltre-cli embed --corpus CORPUS --out {}`",
                dir.display(),
                dir.display()
            )));
        };
        let reference = read_footer(first)?;
        let mut set = VectorSet {
            dir: dir.to_path_buf(),
            files: files.clone(),
            weights_sha256: reference.weights_sha256.clone(),
            dim: reference.dim,
            model: reference.model.clone(),
            ids: Vec::new(),
            rows: HashMap::new(),
            values: Vec::new(),
            missing_parts: missing_parts(&files),
            row_file: Vec::new(),
        };
        for (number, file) in files.iter().enumerate() {
            let builder = open(file)?;
            let footer = footer_of(file, &builder)?;
            if footer.weights_sha256 != reference.weights_sha256 || footer.dim != reference.dim {
                return Err(bad(
                    file,
                    format!(
                        "holds {}-d vectors of model weights sha256 {} but {} holds {}-d vectors of weights sha256 {}: the shards of one directory must come from one model; remove the odd ones and re-embed them",
                        footer.dim,
                        short(&footer.weights_sha256),
                        first.display(),
                        reference.dim,
                        short(&reference.weights_sha256)
                    ),
                ));
            }
            let reader = builder
                .build()
                .map_err(|e| bad(file, format!("cannot read: {e}; {DAMAGED_HINT}")))?;
            let mut row = 0usize;
            for batch in reader {
                let batch = batch
                    .map_err(|e| bad(file, format!("cannot read rows: {e}; {DAMAGED_HINT}")))?;
                set.absorb(number, &batch, row)?;
                row += batch.num_rows();
            }
        }
        Ok(set)
    }

    /// Checks and appends the rows of `batch` of file number `number` (`first_row`: the file row
    /// of its first row).
    fn absorb(&mut self, number: usize, batch: &RecordBatch, first_row: usize) -> Result<()> {
        let files = std::mem::take(&mut self.files);
        let result = self.absorb_rows(&files, number, batch, first_row);
        self.files = files;
        result
    }

    fn absorb_rows(
        &mut self,
        files: &[PathBuf],
        number: usize,
        batch: &RecordBatch,
        first_row: usize,
    ) -> Result<()> {
        let file = &files[number];
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                bad(
                    file,
                    format!("no `{name}` column: a vector shard has columns `{ID_COLUMN}` (Utf8) and `{VECTOR_COLUMN}` (FixedSizeList<Float32, dim>)"),
                )
            })
        };
        let (ids, vectors) = (column(ID_COLUMN)?, column(VECTOR_COLUMN)?);
        let ids: Vec<Option<&str>> = match ids.data_type() {
            DataType::Utf8 => ids.as_string::<i32>().iter().collect(),
            DataType::LargeUtf8 => ids.as_string::<i64>().iter().collect(),
            other => {
                return Err(bad(
                    file,
                    format!("column `{ID_COLUMN}` is {other}, expected Utf8"),
                ))
            }
        };
        let DataType::FixedSizeList(item, size) = vectors.data_type() else {
            return Err(bad(
                file,
                format!(
                    "column `{VECTOR_COLUMN}` is {}, expected FixedSizeList<Float32, {}>",
                    vectors.data_type(),
                    self.dim
                ),
            ));
        };
        if item.data_type() != &DataType::Float32 || *size as usize != self.dim {
            return Err(bad(
                file,
                format!(
                    "column `{VECTOR_COLUMN}` is FixedSizeList<{}, {size}>, expected FixedSizeList<Float32, {}> (`{}` of the metadata)",
                    item.data_type(),
                    self.dim,
                    keys::DIM
                ),
            ));
        }
        let vectors = vectors.as_fixed_size_list();
        let values = vectors.values().as_primitive::<Float32Type>();
        for (i, id) in ids.into_iter().enumerate() {
            let row = first_row + i;
            let Some(id) = id.filter(|id| !id.is_empty()) else {
                return Err(bad(file, format!("row {row}: null or empty id")));
            };
            if vectors.is_null(i) {
                return Err(bad(file, format!("row {row} (id `{id}`): null vector")));
            }
            let start = vectors.value_offset_at(i);
            let vector = values
                .values()
                .get(start..start + self.dim)
                .ok_or_else(|| bad(file, format!("row {row} (id `{id}`): truncated vector")))?;
            if values.null_count() > 0 && (start..start + self.dim).any(|j| values.is_null(j)) {
                return Err(bad(file, format!("row {row} (id `{id}`): null component")));
            }
            if let Some(j) = vector.iter().position(|x| !x.is_finite()) {
                return Err(bad(
                    file,
                    format!(
                        "row {row} (id `{id}`): component {j} is {} (NaN and infinities cannot be ranked); re-embed this shard",
                        vector[j]
                    ),
                ));
            }
            if let Some(&other) = self.rows.get(id) {
                let other = &files[self.row_file[other] as usize];
                return Err(bad(
                    file,
                    format!(
                        "row {row}: id `{id}` is also in {}: a document must have one vector; the shards overlap (mixed shard counts, or a corpus with repeated ids embedded by another tool): keep one of the files",
                        other.display()
                    ),
                ));
            }
            self.row_file.push(number as u32);
            self.rows.insert(id.to_string(), self.ids.len());
            self.ids.push(id.to_string());
            self.values.extend_from_slice(vector);
        }
        Ok(())
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files read, in name order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// sha256 of the embedding model's weights (`weights_sha256` of its manifest).
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The model name the files carry (informative).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The number of vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no vector.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids, in file-name then row order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The vector of `id`.
    pub fn get(&self, id: &str) -> Option<&[f32]> {
        let row = *self.rows.get(id)?;
        self.values.get(row * self.dim..(row + 1) * self.dim)
    }

    /// Shards `i/n` missing from a directory of `part-{i}-of-{n}.parquet` files (empty when the
    /// files do not follow that naming).
    pub fn missing_parts(&self) -> &[Shard] {
        &self.missing_parts
    }
}

/// The parts `i/n` absent from `files`, for each `n` the names use.
fn missing_parts(files: &[PathBuf]) -> Vec<Shard> {
    let parts: BTreeSet<(usize, usize)> = files
        .iter()
        .filter_map(|f| Shard::parse_file_name(f.file_name()?.to_str()?))
        .map(|s| (s.count(), s.index()))
        .collect();
    let counts: BTreeSet<usize> = parts.iter().map(|(n, _)| *n).collect();
    counts
        .into_iter()
        .flat_map(|n| (0..n).map(move |i| (n, i)))
        .filter(|p| !parts.contains(p))
        .filter_map(|(n, i)| Shard::new(i, n).ok())
        .collect()
}
