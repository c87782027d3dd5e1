//! Scale benchmark (issue 11): index writing, merging, exact/ANN/hybrid search and the LTRe
//! training step at 100k and 1M synthetic 384-d vectors. Each measurement runs in its own
//! process (so peak RSS is per size); `scripts/bench_scale.sh` runs them all and the report.
//!
//! ```text
//! scale index N                    write, merge, disk, exact vs read bound, BM25, hybrid
//! scale ann N FACTORY PARAM V,V..  the same index with a per-segment ANN; PARAM nprobe|ef;
//!                                  V or V/R (R: candidates re-scored exactly, AnnParams::rerank);
//!                                  FACTORY@E sets the HNSW build's efConstruction to E
//! scale train N SPEC NPROBE        full LTRe training steps over N document vectors
//! scale train-compare R N:SPEC:NPROBE..  the same, configurations interleaved for R rounds
//! scale report                     markdown table + report.json from the results
//! ```
//!
//! Results go to `$LTRE_SCALE_DIR/results` (default `target/ltre-scale`).
mod data;
mod index;
#[path = "../support/minilm.rs"]
mod minilm;
mod report;
mod train;

use std::path::PathBuf;

use ltre::tantivy::AnnParams;
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

/// One query-time setting: `V` or `V/R` for PARAM `nprobe` or `ef`.
fn ann_setting(param: &str, value: &str) -> Result<AnnParams, BoxError> {
    let bad = || format!("bad setting `{value}` (V or V/R)");
    let (v, rerank) = match value.split_once('/') {
        Some((v, r)) => (v, Some(r.parse::<usize>().map_err(|_| bad())?)),
        None => (value, None),
    };
    let v = v.parse::<usize>().map_err(|_| bad())?;
    Ok(match param {
        "ef" => AnnParams {
            ef_search: Some(v),
            rerank,
            ..Default::default()
        },
        "nprobe" => AnnParams {
            nprobe: Some(v),
            rerank,
            ..Default::default()
        },
        other => return Err(format!("unknown parameter `{other}` (nprobe, ef)").into()),
    })
}

/// Queries per measurement.
const QUERIES: u64 = 200;

fn work_dir() -> PathBuf {
    std::env::var_os("LTRE_SCALE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ltre-scale"))
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn save(name: &str, mut value: serde_json::Value) -> Result<(), BoxError> {
    let dir = work_dir().join("results");
    std::fs::create_dir_all(&dir)?;
    value["load_avg_end"] = json!(load());
    let text = serde_json::to_string_pretty(&value)?;
    println!("{text}");
    std::fs::write(dir.join(format!("{name}.json")), text)?;
    Ok(())
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.is_empty() {
        // `cargo test --all-targets` runs bench targets with no arguments: the measurements
        // take an hour, so say how to run them (tests/scale_smoke.rs exercises the code path).
        eprintln!("scale: no command; run `bash scripts/bench_scale.sh [SIZES...]`");
        return Ok(());
    }
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize| -> Result<u64, BoxError> {
        arg(i)
            .replace('_', "")
            .parse()
            .map_err(|_| format!("argument {i} `{}` is not a number", arg(i)).into())
    };
    let work = work_dir();
    std::fs::create_dir_all(&work)?;
    let data = data::Mixture::new(7);
    match arg(0) {
        "index" => {
            let n = num(1)?;
            let load_start = load();
            let dir = work.join(format!("index-{n}"));
            let built = index::build(&dir, n, None, &data)?;
            let search = index::measure_exact(&built, &data, QUERIES)?;
            let value = json!({
                "kind": "index", "docs": n, "load_avg_start": load_start,
                "write": built.report, "search": search, "memory": index::memory(),
            });
            drop(built);
            std::fs::remove_dir_all(&dir)?;
            save(&format!("index-{n}"), value)
        }
        "ann" => {
            let n = num(1)?;
            let factory = arg(2).to_string();
            let settings: Vec<AnnParams> = arg(4)
                .split(',')
                .map(|v| ann_setting(arg(3), v))
                .collect::<Result<_, _>>()?;
            let load_start = load();
            let dir = work.join(format!("index-{n}-{}", slug(&factory)));
            let built = index::build(&dir, n, Some(&factory), &data)?;
            let ann = index::measure_ann(&built, &data, QUERIES, &settings)?;
            let value = json!({
                "kind": "ann", "docs": n, "factory": factory, "load_avg_start": load_start,
                "write": built.report, "ann": ann, "memory": index::memory(),
            });
            drop(built);
            std::fs::remove_dir_all(&dir)?;
            save(&format!("ann-{n}-{}", slug(&factory)), value)
        }
        "train" => {
            let n = num(1)? as usize;
            let spec = arg(2).to_string();
            let nprobe = num(3)? as usize;
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let model = train::model_dir(&root, &work)?;
            let load_start = load();
            let mut value = train::run(&model, &work, n, &spec, nprobe)?;
            value["kind"] = json!("train");
            value["load_avg_start"] = json!(load_start);
            save(&format!("train-{n}-{}", slug(&spec)), value)
        }
        "train-compare" => {
            let rounds = num(1)? as usize;
            let configs = args[2..]
                .iter()
                .map(|c| {
                    let parts: Vec<&str> = c.splitn(3, ':').collect();
                    match parts[..] {
                        [n, spec, nprobe] => Ok((n.parse()?, spec.to_string(), nprobe.parse()?)),
                        _ => Err(format!("`{c}`: expected DOCS:SPEC:NPROBE").into()),
                    }
                })
                .collect::<Result<Vec<(usize, String, usize)>, BoxError>>()?;
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let model = train::model_dir(&root, &work)?;
            let load_start = load();
            let mut value = train::compare(&model, &work, &configs, rounds)?;
            value["kind"] = json!("train-compare");
            value["load_avg_start"] = json!(load_start);
            save("train-compare", value)
        }
        "report" => report::write(&work),
        other => Err(format!("unknown command `{other}`: index | ann | train | report").into()),
    }
}
