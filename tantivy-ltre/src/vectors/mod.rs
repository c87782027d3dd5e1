//! Document vectors as Parquet shards: encoding decoupled from indexing.
//!
//! [`embed_corpus`] embeds a BEIR `corpus.jsonl` (or one shard of it) with an exported model and
//! writes `part-{i:05}-of-{n:05}.parquet` into a directory; [`VectorSet::load`] reads and checks a
//! directory of such files (from `ltre-cli embed`, `distributed/embed_ray.py`, or any writer of
//! the same format); and [`crate::corpus::index_corpus`] with [`CorpusOptions::vectors`] indexes
//! a corpus from them instead of running the encoder. The shards of a big corpus can thus be
//! computed on other machines (a Ray or Spark cluster, GPUs) and indexed here.
//!
//! # The format (version [`FORMAT_VERSION`])
//!
//! Columns: `id` (Utf8, not null) and `vector` (FixedSizeList<Float32, dim>, not null, finite).
//! File key-value metadata ([`keys`]): `ltre.format_version`, `ltre.weights_sha256` (the
//! manifest's `weights_sha256` of the model that embedded the documents), `ltre.dim`,
//! `ltre.model` (a name, informative), and informative extras (`ltre.shard`, `ltre.batch_size`,
//! `ltre.commit_every`, `ltre.producer`). Any file name ending in `.parquet` and not starting
//! with `.` is read; names starting with `.` are temporary files of a writer.
//!
//! # Shards
//!
//! Shard `i/n` holds the documents of every `n`-th **encoder batch** starting from batch `i`,
//! where the batches are exactly those `index_corpus` forms: the corpus's documents in line
//! order (a repeated `_id` is skipped, the first occurrence kept, as the index keeps it) are cut
//! into commits of `commit_every` documents and each commit into batches of `batch_size`. So the
//! shards partition the corpus deterministically, and every document is embedded in the same
//! batch (same padding, same truncation, same text [`ltre_core::data::Doc::dense_text`]) as a
//! direct `index_corpus` with the same `batch_size` and `commit_every` would embed it: the
//! vectors are bit-identical to the ones indexing computes on the same machine, and so is the
//! recorded document-vector checksum.
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use tantivy_ltre::corpus::{index_corpus, CorpusOptions};
//! use tantivy_ltre::vectors::{embed_corpus, EmbedOptions, Shard};
//! for i in 0..2 {
//!     let options = EmbedOptions { shard: Shard::new(i, 2)?, ..EmbedOptions::new("models/minilm") };
//!     let report = embed_corpus("scifact/corpus.jsonl".as_ref(), "vectors".as_ref(), &options, |_| {})?;
//!     println!("{report}");
//! }
//! let options = CorpusOptions {
//!     model: Some("models/minilm".into()),
//!     vectors: Some("vectors".into()),
//!     ..CorpusOptions::default()
//! };
//! index_corpus("index".as_ref(), "scifact/corpus.jsonl".as_ref(), &options, |_| {})?;
//! # Ok(())
//! # }
//! ```
//!
//! [`CorpusOptions::vectors`]: crate::corpus::CorpusOptions::vectors
use std::path::Path;

use crate::error::{Error, Result};

mod join;
mod read;
mod write;

pub(crate) use join::{add_precomputed, join_corpus};
pub use read::VectorSet;
pub use write::{embed_corpus, EmbedOptions, EmbedReport};

/// The format version this ltre writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The id column.
pub const ID_COLUMN: &str = "id";
/// The vector column.
pub const VECTOR_COLUMN: &str = "vector";

/// File key-value metadata keys.
pub mod keys {
    /// The format version (`"1"`).
    pub const FORMAT_VERSION: &str = "ltre.format_version";
    /// sha256 (hex) of the embedding model's weights (its manifest's `weights_sha256`).
    pub const WEIGHTS_SHA256: &str = "ltre.weights_sha256";
    /// The vector dimension.
    pub const DIM: &str = "ltre.dim";
    /// The model's name (informative).
    pub const MODEL: &str = "ltre.model";
    /// `i/n` of the shard (informative).
    pub const SHARD: &str = "ltre.shard";
    /// Texts per encoder batch (informative).
    pub const BATCH_SIZE: &str = "ltre.batch_size";
    /// Documents per commit the batches were aligned to (informative).
    pub const COMMIT_EVERY: &str = "ltre.commit_every";
    /// What wrote the file (informative).
    pub const PRODUCER: &str = "ltre.producer";
}

/// One shard of a corpus: `index` of `count` (see the module docs for which documents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Default for Shard {
    /// The whole corpus: shard 0 of 1.
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Shard `index` of `count` (`index < count`, `count >= 1`).
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count || count > 99_999 {
            return Err(Error::Invalid(format!(
                "shard {index}/{count}: need 0 <= i < n <= 99999 (e.g. `0/4` .. `3/4`)"
            )));
        }
        Ok(Shard { index, count })
    }

    /// The shard index `i`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The number of shards `n`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The file name of this shard: `part-{i:05}-of-{n:05}.parquet`.
    pub fn file_name(&self) -> String {
        format!("part-{:05}-of-{:05}.parquet", self.index, self.count)
    }

    /// `(i, n)` of a name written by [`Shard::file_name`], `None` for any other name.
    pub fn parse_file_name(name: &str) -> Option<Shard> {
        let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
        let (i, n) = rest.split_once("-of-")?;
        Shard::new(i.parse().ok()?, n.parse().ok()?).ok()
    }

    /// Whether the document batch `batch` (0-based, in the order of the module docs) belongs to
    /// this shard.
    pub fn holds_batch(&self, batch: usize) -> bool {
        batch % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;

    /// Parses `i/n`.
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || {
            Error::Invalid(format!(
                "shard `{s}`: expected i/n with 0 <= i < n (e.g. `0/4`)"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The 0-based batch of the `position`-th unique corpus document, for `index_corpus`'s batching
/// (`commit_every` documents per commit, `batch_size` per batch, restarting at each commit).
pub(crate) fn batch_of(position: usize, batch_size: usize, commit_every: usize) -> usize {
    let (batch_size, commit_every) = (batch_size.max(1), commit_every.max(1));
    let per_commit = commit_every.div_ceil(batch_size);
    (position / commit_every) * per_commit + (position % commit_every) / batch_size
}

/// The first 12 hex digits of a fingerprint, for messages.
pub(crate) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Whether `path` is a shard file a reader should read (a `.parquet` name, not hidden).
pub(crate) fn is_shard_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".parquet") && path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_name() {
        let s: Shard = "1/4".parse().unwrap();
        assert_eq!((s.index(), s.count()), (1, 4));
        assert_eq!(s.file_name(), "part-00001-of-00004.parquet");
        assert_eq!(Shard::parse_file_name(&s.file_name()), Some(s));
        assert_eq!(Shard::parse_file_name("other.parquet"), None);
        for bad in ["4/4", "1", "a/b", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn batches_restart_at_each_commit() {
        // commit_every 5, batch 2: commits [0..5) [5..10) -> batches 0 0 1 1 2 | 3 3 4 4 5
        let batches: Vec<usize> = (0..10).map(|p| batch_of(p, 2, 5)).collect();
        assert_eq!(batches, [0, 0, 1, 1, 2, 3, 3, 4, 4, 5]);
        // Every position is in exactly one shard of n.
        for p in 0..10 {
            let n = 3;
            let holders = (0..n)
                .filter(|&i| Shard::new(i, n).unwrap().holds_batch(batch_of(p, 2, 5)))
                .count();
            assert_eq!(holders, 1);
        }
    }
}
