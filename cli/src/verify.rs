//! `ltre-cli verify`: the full integrity check of an index's segment files through
//! [`tantivy_ltre::verify::verify_dir`]; exits non-zero when a file is damaged, naming the
//! segment, the field and the file.
use std::path::PathBuf;

use anyhow::{bail, Result};
use tantivy_ltre::verify::{verify_dir, FileStatus};

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
        match &report.dense_field {
            Some(field) => println!("dense field `{field}`"),
            None => println!("no dense field: checking Tantivy's files only"),
        }
        for segment in &report.segments {
            println!(
                "segment {} ({} docs, {} Tantivy files checked)",
                segment.segment, segment.max_doc, segment.tantivy_files_checked
            );
            for file in &segment.files {
                match &file.status {
                    FileStatus::Ok => println!("  ok        {}", file.file),
                    FileStatus::Unchecked(note) => println!("  unchecked {}: {note}", file.file),
                    FileStatus::Damaged(problems) => {
                        println!("  DAMAGED   {}: {}", file.file, problems.join("; "))
                    }
                }
            }
        }
    }
    let damaged: Vec<String> = report
        .damaged()
        .map(|(segment, file)| {
            let field = file
                .field
                .as_deref()
                .map_or_else(|| "Tantivy data".to_string(), |f| format!("field `{f}`"));
            format!("segment {} ({field}): {}", segment.segment, file.file)
        })
        .collect();
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
