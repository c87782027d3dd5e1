//! The all-MiniLM-L6-v2 export with training graphs that the training benchmarks share.
use std::path::{Path, PathBuf};

use ltre::core::export::{export_checkpoint, ExportOptions};
use ltre::core::manifest::{Manifest, WordEmbeddingGrad};

/// Exports the checkpoint `bash scripts/setup.sh` installs (`.ltre/models/all-MiniLM-L6-v2`
/// under `root`) with training graphs (`mode` word-embedding gradients) to `out`, unless a
/// current export is already there (older exports lack the split forward/backward graphs).
pub fn train_export(root: &Path, out: &Path, mode: WordEmbeddingGrad) -> Result<PathBuf, String> {
    let src = root.join(".ltre/models/all-MiniLM-L6-v2");
    if !src.join("model.safetensors").is_file() {
        return Err(format!(
            "{} missing; run `bash scripts/setup.sh`",
            src.display()
        ));
    }
    let current = Manifest::load(out)
        .ok()
        .and_then(|m| m.train)
        .is_some_and(|t| t.backward_file.is_some());
    if !current {
        let opts = ExportOptions {
            train: Some(mode),
            ..Default::default()
        };
        export_checkpoint(&src, out, &opts)
            .map_err(|e| format!("exporting {} with training graphs: {e}", src.display()))?;
    }
    Ok(out.to_path_buf())
}
