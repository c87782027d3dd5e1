//! `ltre-cli encoder`: list, activate or roll back the query encoders of an index.
//!
//! Activation is a rename of `INDEX/encoders/ACTIVE`; running searchers (a [`LiveEncoder`]
//! inside an application, or a long `ltre-cli eval`) pick it up on their next query.
//! `activate` and `rollback` may run concurrently from any number of processes: the registry
//! lock (`INDEX/encoders/.lock`) runs them one at a time. A command killed mid-way either did
//! not happen or did (see `tantivy_ltre::registry_log`); `list` reports a switch whose ACTIVE
//! write was interrupted, and the next `activate` or `rollback` completes it first.
//!
//! [`LiveEncoder`]: tantivy_ltre::live::LiveEncoder
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use tantivy_ltre::encoders::{EncoderStore, IndexConfig};
use tantivy_ltre::report::encoder_table;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List the stored encoders (`*` marks the active one).
    List {
        /// Index directory.
        #[arg(long)]
        index: PathBuf,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an encoder the active query encoder.
    Activate {
        /// Index directory.
        #[arg(long)]
        index: PathBuf,
        /// Encoder id (see `ltre-cli encoder list`).
        id: String,
    },
    /// Re-activate the encoder that was active before the current one.
    Rollback {
        /// Index directory.
        #[arg(long)]
        index: PathBuf,
    },
}

fn list(index: &Path, json: bool) -> Result<()> {
    let store = EncoderStore::new(index);
    let records = store.list_records()?;
    if records.is_empty() {
        bail!(
            "{}: no encoders (a lexical-only index, or not an ltre index)",
            index.display()
        );
    }
    let active = store.active_id().ok();
    if let Some(warning) = store.interrupted_switch_warning() {
        eprintln!("warning: {warning}");
    }
    if json {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["active"] = (Some(&r.id) == active.as_ref()).into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", encoder_table(&records, active.as_deref()));
    }
    Ok(())
}

fn activate(index: &Path, id: &str) -> Result<()> {
    let config = IndexConfig::load(index)?;
    EncoderStore::new(index).activate_checked(id, config.dim)?;
    println!("active query encoder: {id}");
    Ok(())
}

/// Runs `ltre-cli encoder`.
pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::List { index, json } => list(&index, json),
        Command::Activate { index, id } => activate(&index, &id),
        Command::Rollback { index } => {
            let id = EncoderStore::new(&index).rollback()?;
            println!("rolled back; active query encoder: {id}");
            Ok(())
        }
    }
}
