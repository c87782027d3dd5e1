#!/usr/bin/env python3
"""The Python peer for ltre's encode benchmark: onnxruntime 1.31.1 + Hugging Face `tokenizers`
driving the SAME exported model.onnx, with the protocol of `cargo bench --bench encode -- --report`:

- same texts: the first 300 SciFact queries and the first 512 documents (`title + " " + text`);
- same tokenisation: tokenizer.json with padding off, truncation at the manifest's
  query_max_length / document_max_length;
- same session: GraphOptimizationLevel Level3 (ORT_ENABLE_LAYOUT), the same intra-op threads,
  sequential execution;
- query latency: each query alone (batch 1), tokenisation included, after 20 warm-up queries; p50;
- document throughput: all documents in one call, sorted by token count, 32 per run, each run
  padded to its longest text (dynamic padding), rows restored to input order; three passes, median.

Prints one JSON object. Usage (creates .ltre/venv-peer on first run):
    python3 scripts/bench_peer.py --model DIR [--threads N] [--data ../shared/data/scifact]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".ltre", "venv-peer")
REQUIREMENTS = os.path.join(ROOT, "scripts", "requirements-peer.txt")
N_QUERIES = 300
N_DOCS = 512
DOC_BATCH = 32


def ensure_venv():
    """Re-executes this script inside .ltre/venv-peer, creating it if needed."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(python):
        print(f"bench_peer: creating {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
        subprocess.check_call(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", REQUIREMENTS]
        )
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def read_jsonl(path, limit, text):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(text(json.loads(line)))
                if len(out) == limit:
                    break
    return out


class PeerEncoder:
    def __init__(self, model_dir, threads):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        with open(os.path.join(model_dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.tokenizers = {}
        for kind in ("query", "document"):
            tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
            tok.no_padding()
            tok.enable_truncation(self.manifest[f"{kind}_max_length"])
            self.tokenizers[kind] = tok
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT
        opts.intra_op_num_threads = threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )

    def run(self, encodings):
        import numpy as np

        seq = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), seq), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = e.attention_mask
            types[i, :n] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self.session.run(["embedding"], feeds)[0]

    def encode(self, texts, kind, batch=DOC_BATCH):
        import numpy as np

        tok = self.tokenizers[kind]
        if len(texts) == 1:
            return self.run([tok.encode(texts[0])])
        encodings = tok.encode_batch_fast(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.manifest["embedding_dim"]), dtype=np.float32)
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            out[chunk] = self.run([encodings[i] for i in chunk])
        return out


def main():
    ensure_venv()
    import onnxruntime
    import tokenizers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="exported model directory (ltre-cli export-onnx)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"))
    args = ap.parse_args()

    queries = read_jsonl(os.path.join(args.data, "queries.jsonl"), N_QUERIES, lambda v: v["text"])
    docs = read_jsonl(
        os.path.join(args.data, "corpus.jsonl"),
        N_DOCS,
        lambda v: f"{v.get('title') or ''} {v.get('text') or ''}",
    )
    enc = PeerEncoder(args.model, args.threads)

    for q in queries[:20]:
        enc.encode([q], "query")
    enc.encode(docs[:DOC_BATCH], "document")

    latencies = []
    for q in queries:
        start = time.perf_counter()
        enc.encode([q], "query")
        latencies.append((time.perf_counter() - start) * 1e3)
    latencies.sort()
    tokenize = []
    for q in queries:
        start = time.perf_counter()
        enc.tokenizers["query"].encode(q)
        tokenize.append((time.perf_counter() - start) * 1e3)
    tokenize.sort()

    passes = []
    for _ in range(3):
        start = time.perf_counter()
        enc.encode(docs, "document")
        passes.append(time.perf_counter() - start)
    passes.sort()

    def pct(p, xs=latencies):
        return xs[round((len(xs) - 1) * p)]

    print(
        json.dumps(
            {
                "impl": f"peer (Python onnxruntime {onnxruntime.__version__}, tokenizers {tokenizers.__version__})",
                "model": args.model,
                "threads": args.threads,
                "query_batch": 1,
                "n_queries": len(queries),
                "query_p50_ms": pct(0.5),
                "query_p90_ms": pct(0.9),
                "query_mean_ms": statistics.fmean(latencies),
                "query_tokenize_p50_ms": pct(0.5, tokenize),
                "doc_batch": DOC_BATCH,
                "n_docs": len(docs),
                "doc_pass_s": passes,
                "docs_per_s": len(docs) / passes[1],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
