#!/usr/bin/env python3
"""Build the trec_eval parity fixture for ltre-core's metrics.

Writes a synthetic run and graded qrels to tests/fixtures/trec_parity/, evaluates them with
trec_eval (through pytrec-eval-terrier) and writes the expected values to expected.json, which
the Rust test `metrics::tests::trec_eval_parity` compares against (tolerance 1e-4).

The fixture covers: score ties (broken by docid descending), ids whose numeric and byte orders
differ, graded and negative grades, a query with no relevant document, a query missing from the
run and a run query that is not judged.

Usage: python3 scripts/trec_parity.py   (re-execs itself inside .ltre/venv, created if missing)
"""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".ltre" / "venv"
OUT = ROOT / "tests" / "fixtures" / "trec_parity"
CUTS_NDCG = (5, 10)
CUTS_RECALL = (10, 100)
CUT_MRR = 10


def ensure_venv():
    """Re-run this script inside .ltre/venv with pytrec-eval-terrier installed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import pytrec_eval"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pytrec-eval-terrier"], check=True)
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def synthetic(seed=13):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(1, 61)]  # d1 < d10 < d2 in byte order
    run, qrels = {}, {}
    for q in range(1, 13):
        qid = f"q{q}"
        retrieved = rng.sample(docs, rng.randint(5, 40))
        # Quarter-point scores in a small range: plenty of exact ties.
        run[qid] = {d: rng.randint(0, 12) / 4.0 for d in retrieved}
        judged = rng.sample(docs, rng.randint(3, 15))
        qrels[qid] = {d: rng.choice([-1, 0, 0, 1, 1, 2, 3]) for d in judged}
    qrels["q3"] = {d: 0 for d in rng.sample(docs, 4)}  # no relevant document
    del run["q5"]  # judged, never retrieved
    run["q99"] = {"d1": 1.0, "d2": 0.5}  # retrieved, never judged
    return run, qrels


def trec_sorted(results):
    """trec_eval's order: score descending, then docid descending (byte order)."""
    return sorted(results.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)


def main():
    ensure_venv()
    import pytrec_eval

    run, qrels = synthetic()
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "run.trec", "w") as f:
        for qid in sorted(run):
            # Ranks are written shuffled on purpose: trec_eval (and ltre) must ignore them.
            for rank, (doc, score) in enumerate(sorted(run[qid].items())):
                f.write(f"{qid} Q0 {doc} {rank + 1} {score} synthetic\n")
    with open(OUT / "qrels.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid in sorted(qrels):
            for doc, grade in sorted(qrels[qid].items()):
                f.write(f"{qid}\t{doc}\t{grade}\n")

    measures = {f"ndcg_cut.{','.join(map(str, CUTS_NDCG))}", f"recall.{','.join(map(str, CUTS_RECALL))}"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    cut_run = {q: dict(trec_sorted(r)[:CUT_MRR]) for q, r in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut_run)

    names = [f"ndcg_cut_{k}" for k in CUTS_NDCG] + [f"recall_{k}" for k in CUTS_RECALL] + [f"mrr_{CUT_MRR}"]
    per_query = {}
    for qid, judged in qrels.items():
        if not any(g >= 1 for g in judged.values()):
            continue
        values = dict(full.get(qid, {}))
        values[f"mrr_{CUT_MRR}"] = mrr.get(qid, {}).get("recip_rank", 0.0)
        per_query[qid] = {n: float(values.get(n, 0.0)) for n in names}
    mean = {n: sum(v[n] for v in per_query.values()) / len(per_query) for n in names}
    expected = {
        "source": f"pytrec-eval-terrier {getattr(pytrec_eval, '__version__', '?')}, scripts/trec_parity.py",
        "metrics": names,
        "per_query": per_query,
        "mean": mean,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}: {len(per_query)} evaluated queries; mean {json.dumps(mean)}")


if __name__ == "__main__":
    main()
