//! The markdown report (stdout and `report.md`) and `report.json` from the per-run results.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

/// ANN goal: recall@10 at least this, at least `SPEEDUP` times the exact scan's speed.
const RECALL: f64 = 0.95;
const SPEEDUP: f64 = 10.0;

fn get(v: &Value, path: &str) -> Option<f64> {
    path.split('.').try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// One table row: a value per size and the growth from the smallest to the largest size.
fn row(out: &mut String, label: &str, values: &[Option<f64>]) {
    let growth = match (values.first(), values.last()) {
        (Some(Some(a)), Some(Some(b))) if values.len() > 1 && *a != 0.0 => Some(b / a),
        _ => None,
    };
    let cells: Vec<String> = values.iter().map(|v| fmt(*v)).collect();
    let _ = writeln!(
        out,
        "| {label} | {} | {}x |",
        cells.join(" | "),
        fmt(growth)
    );
}

/// The ANN point meeting the goal at the lowest latency, else the one with the best recall
/// among those at least `SPEEDUP`x faster, else the best recall.
fn pick(points: &[Value]) -> Option<&Value> {
    let r = |p: &Value| get(p, "recall_at_10").unwrap_or(0.0);
    let s = |p: &Value| get(p, "speedup_vs_exact").unwrap_or(0.0);
    let lat = |p: &Value| get(p, "p50_ms").unwrap_or(f64::MAX);
    points
        .iter()
        .filter(|p| r(p) >= RECALL && s(p) >= SPEEDUP)
        .min_by(|a, b| lat(a).total_cmp(&lat(b)))
        .or_else(|| {
            points
                .iter()
                .filter(|p| s(p) >= SPEEDUP)
                .max_by(|a, b| r(a).total_cmp(&r(b)).then(lat(b).total_cmp(&lat(a))))
        })
        .or_else(|| points.iter().max_by(|a, b| r(a).total_cmp(&r(b))))
}

fn param(p: &Value) -> String {
    let base = match (p["nprobe"].as_u64(), p["ef_search"].as_u64()) {
        (Some(n), _) => format!("nprobe {n}"),
        (_, Some(e)) => format!("efSearch {e}"),
        _ => "-".into(),
    };
    match p["rerank"].as_u64() {
        Some(r) => format!("{base}, rerank {r}"),
        None => base,
    }
}

pub fn write(work: &Path) -> Result<(), BoxError> {
    let mut results: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(work.join("results"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            results.push(serde_json::from_str(&std::fs::read_to_string(&path)?)?);
        }
    }
    let of = |kind: &str| -> Vec<&Value> { results.iter().filter(|r| r["kind"] == kind).collect() };
    let mut sizes: Vec<u64> = results
        .iter()
        .filter(|r| r["kind"] == "index" || r["kind"] == "ann")
        .filter_map(|r| r["docs"].as_u64())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut out = String::new();
    let header = |out: &mut String, first: &str| {
        let cols: Vec<String> = sizes.iter().map(|n| format!("{n} vectors")).collect();
        let _ = writeln!(out, "| {first} | {} | growth |", cols.join(" | "));
        let _ = writeln!(out, "|---|{}---:|", "---:|".repeat(sizes.len()));
    };

    let index: BTreeMap<u64, &Value> = of("index")
        .into_iter()
        .filter_map(|r| Some((r["docs"].as_u64()?, r)))
        .collect();
    let series = |path: &str| -> Vec<Option<f64>> {
        sizes
            .iter()
            .map(|n| index.get(n).and_then(|r| get(r, path)))
            .collect()
    };
    header(&mut out, "index (no ANN)");
    for (label, path) in [
        ("write throughput (vectors/s)", "write.write_vectors_per_s"),
        ("segments before merge", "write.segments_before_merge"),
        ("merge into one segment (s)", "write.merge_s"),
        ("index directory (MiB)", "write.disk_mib"),
        ("peak RSS of the process (MiB)", "memory.peak_rss_mib"),
        ("exact DenseQuery top 10, p50 (ms)", "search.exact_p50_ms"),
        (
            "plain read of the same vectors, p50 (ms)",
            "search.read_p50_ms",
        ),
        ("read bandwidth (GB/s)", "search.read_gb_per_s"),
        ("exact / read", "search.exact_over_read"),
        ("BM25 top 10, p50 (ms)", "search.bm25_p50_ms"),
        ("hybrid RRF top 10, p50 (ms)", "search.hybrid_rrf_p50_ms"),
    ] {
        row(&mut out, label, &series(path));
    }

    let mut factories: Vec<String> = of("ann")
        .iter()
        .filter_map(|r| r["factory"].as_str().map(String::from))
        .collect();
    factories.sort();
    factories.dedup();
    let mut sweeps = String::new();
    for factory in &factories {
        let runs: BTreeMap<u64, &Value> = of("ann")
            .into_iter()
            .filter(|r| r["factory"] == factory.as_str())
            .filter_map(|r| Some((r["docs"].as_u64()?, r)))
            .collect();
        let chosen: Vec<Option<&Value>> = sizes
            .iter()
            .map(|n| {
                runs.get(n)
                    .and_then(|r| r["ann"]["points"].as_array())
                    .and_then(|p| pick(p))
            })
            .collect();
        let _ = writeln!(
            out,
            "| **{factory}** (per-segment ANN) |{}   |",
            "   |".repeat(sizes.len())
        );
        let build: Vec<Option<f64>> = sizes
            .iter()
            .map(|n| runs.get(n).and_then(|r| get(r, "write.merge_s")))
            .collect();
        row(&mut out, "merge incl. ANN build (s)", &build);
        let disk: Vec<Option<f64>> = sizes
            .iter()
            .map(|n| runs.get(n).and_then(|r| get(r, "write.disk_mib")))
            .collect();
        row(&mut out, "index directory (MiB)", &disk);
        let settings: Vec<String> = chosen.iter().map(|p| p.map_or("-".into(), param)).collect();
        let _ = writeln!(out, "| chosen setting | {} |   |", settings.join(" | "));
        for (label, key) in [
            ("p50 (ms)", "p50_ms"),
            ("recall@10", "recall_at_10"),
            ("speed-up vs exact", "speedup_vs_exact"),
        ] {
            let v: Vec<Option<f64>> = chosen.iter().map(|p| p.and_then(|p| get(p, key))).collect();
            row(&mut out, label, &v);
        }
        for (n, r) in &runs {
            for p in r["ann"]["points"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    sweeps,
                    "| {factory} | {n} | {} | {} | {} | {} |",
                    param(p),
                    fmt(get(p, "p50_ms")),
                    fmt(get(p, "recall_at_10")),
                    fmt(get(p, "speedup_vs_exact"))
                );
            }
        }
    }

    let mut train = String::new();
    let mut trains = of("train");
    trains.sort_by_key(|r| (r["index"].as_str().map(String::from), r["docs"].as_u64()));
    if !trains.is_empty() {
        let _ = writeln!(
            train,
            "| docs | index | nprobe | step p50 (s) | forward | retrieval+loss | backward | AdamW | index build (s) | RSS: tower / +vectors / after build / peak (MiB) |"
        );
        let _ = writeln!(train, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in trains {
            let _ = writeln!(
                train,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} |",
                r["docs"],
                r["index"].as_str().unwrap_or("-"),
                r["nprobe"],
                fmt(get(r, "step_p50_s")),
                fmt(get(r, "forward_s")),
                fmt(get(r, "retrieval_loss_s")),
                fmt(get(r, "backward_s")),
                fmt(get(r, "adamw_s")),
                fmt(get(r, "index_build_s")),
                fmt(get(r, "rss_after_tower_mib")),
                fmt(get(r, "rss_with_vectors_mib")),
                fmt(get(r, "rss_after_index_build_mib")),
                fmt(get(r, "peak_rss_mib")),
            );
        }
    }
    for compare in of("train-compare") {
        let _ = writeln!(
            train,
            "\nInterleaved in one process ({} rounds, one step of each per round):\n",
            compare["rounds"]
        );
        let _ = writeln!(
            train,
            "| docs | index | nprobe | step p50 (s) | vs first | forward | retrieval+loss | backward | AdamW |"
        );
        let _ = writeln!(train, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in compare["configs"].as_array().into_iter().flatten() {
            let _ = writeln!(
                train,
                "| {} | {} | {} | {} | {}x | {} | {} | {} | {} |",
                r["docs"],
                r["index"].as_str().unwrap_or("-"),
                r["nprobe"],
                fmt(get(r, "step_p50_s")),
                fmt(get(r, "vs_first")),
                fmt(get(r, "forward_s")),
                fmt(get(r, "retrieval_loss_s")),
                fmt(get(r, "backward_s")),
                fmt(get(r, "adamw_s")),
            );
        }
    }
    if !sweeps.is_empty() {
        let _ = writeln!(
            out,
            "\nANN sweep (200 queries, recall@10 against the exact top 10):\n"
        );
        let _ = writeln!(
            out,
            "| index | vectors | setting | p50 (ms) | recall@10 | speed-up |"
        );
        let _ = writeln!(out, "|---|---:|---|---:|---:|---:|");
        out.push_str(&sweeps);
    }
    if !train.is_empty() {
        let _ = writeln!(
            out,
            "\nLTRe training step (batch 32, top 200, MiniLM-L6 query tower):\n"
        );
        out.push_str(&train);
    }
    print!("{out}");
    std::fs::write(work.join("report.md"), &out)?;
    let report = json!({ "results": results });
    std::fs::write(
        work.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}
