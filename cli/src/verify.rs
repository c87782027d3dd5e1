//! `ltre-cli verify`: the full integrity check of an index's segment files through
//! [`tantivy_ltre::verify::verify_dir`]; exits non-zero when a file is damaged, naming the
//! segment, the field and the file.
use std::path::PathBuf;

use anyhow::{bail, Result};
use tantivy_ltre::verify::verify_dir;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Print the report as JSON (the exit status still says whether a file is damaged).
    #[arg(long)]
    json: bool,
}

/// Runs `ltre-cli verify`.
pub fn run(args: Args) -> Result<()> {
    let report = verify_dir(&args.index)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    let damaged = report.damage_lines();
    if !damaged.is_empty() {
        bail!(
            "{} damaged file(s) in {}:\n  {}\nre-index the documents of the damaged segments or restore the index from a backup",
            damaged.len(),
            args.index.display(),
            damaged.join("\n  ")
        );
    }
    let unchecked = report.unchecked().count();
    if unchecked > 0 {
        eprintln!(
            "note: {unchecked} dense file(s) predate checksums (format version 1): readable, \
             structure checked; re-index to add checksums"
        );
    }
    if !args.json {
        println!("ok: {} segment(s) verified", report.segments.len());
    }
    Ok(())
}
