//! Finds the ONNX Runtime shared library and initialises `ort` once per process.
//!
//! ltre links ONNX Runtime dynamically (`ort`'s `load-dynamic`), so the library must be found at
//! run time. Search order:
//! 1. `LTRE_ORT_DYLIB` or `ORT_DYLIB_PATH` (a file path);
//! 2. `.ltre/onnxruntime/libonnxruntime.so*` in the current directory or any parent (with the
//!    `cuda` feature, `.ltre/onnxruntime-gpu/` first: the CUDA build `scripts/setup.sh` installs
//!    on a GPU machine; its CUDA libraries need `source scripts/env-gpu.sh`);
//! 3. the same next to the running executable or any of its parents (`target/release/..`);
//! 4. the cache of the repository this crate was built from.
//!
//! `scripts/setup.sh` puts the library in `.ltre/onnxruntime/`.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Error, Result};

/// The command that installs the library, quoted in errors.
pub const SETUP_HINT: &str = "run `bash scripts/setup.sh` in the ltre repository (it fetches ONNX Runtime 1.31.1 into .ltre/onnxruntime/), or set ORT_DYLIB_PATH to libonnxruntime.so";

static INIT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();

fn lib_in(dir: &Path) -> Option<PathBuf> {
    // With `cuda`, the CUDA build that scripts/setup.sh installs on a GPU machine comes first.
    #[cfg(feature = "cuda")]
    if let Some(gpu) = lib_in_dir(&dir.join(".ltre").join("onnxruntime-gpu")) {
        return Some(gpu);
    }
    lib_in_dir(&dir.join(".ltre").join("onnxruntime"))
}

fn lib_in_dir(ort_dir: &Path) -> Option<PathBuf> {
    let exact = ort_dir.join("libonnxruntime.so");
    if exact.is_file() {
        return Some(exact);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(ort_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found.pop()
}

fn search_up(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(lib_in)
}

/// Locates the ONNX Runtime shared library without loading it.
pub fn find_library() -> Result<PathBuf> {
    for var in ["LTRE_ORT_DYLIB", "ORT_DYLIB_PATH"] {
        if let Ok(p) = std::env::var(var) {
            if !p.is_empty() {
                let path = PathBuf::from(&p);
                if path.is_file() {
                    return Ok(path);
                }
                return Err(Error::Runtime(format!(
                    "{var}={p} does not name a file; unset it or point it at libonnxruntime.so ({SETUP_HINT})"
                )));
            }
        }
    }
    let candidates = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf)),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    candidates
        .iter()
        .flatten()
        .find_map(|d| search_up(d))
        .ok_or_else(|| Error::Runtime(format!("libonnxruntime.so not found; {SETUP_HINT}")))
}

/// Loads ONNX Runtime (once per process) and returns the library path in use.
pub fn init() -> Result<PathBuf> {
    INIT.get_or_init(|| {
        let path = find_library().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path)
            .map_err(|e| format!("failed to load {}: {e}; {SETUP_HINT}", path.display()))?;
        let env = builder.with_name("ltre").build().map_err(|e| {
            format!(
                "failed to initialise ONNX Runtime from {}: {e}",
                path.display()
            )
        })?;
        let _ = ENV.set(env);
        tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
        Ok(path)
    })
    .clone()
    .map_err(Error::Runtime)
}

/// The process-wide ONNX Runtime environment that sessions are built from (loads the library
/// first, see [`init`]).
pub fn environment() -> Result<&'static ort::environment::Environment> {
    init()?;
    ENV.get()
        .ok_or_else(|| Error::Runtime("the ONNX Runtime environment was not created".to_string()))
}
