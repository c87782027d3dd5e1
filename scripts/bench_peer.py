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
  padded to its longest text (dynamic padding), rows restored to input order; --passes passes
  (default 3), median.

Prints one JSON object. Usage (creates .ltre/venv-peer on first run):
    python3 scripts/bench_peer.py --model DIR [--threads N] [--data ../shared/data/scifact]

With `--paired BENCH_BINARY` (the compiled `benches/encode.rs`), the Rust encoder runs in a child
process (`--serve`) and every measurement alternates between the two sides (order flipped each
time, a short pause between), so that on a shared machine both see the same background load;
the output then holds both sides and their ratios.
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

    @staticmethod
    def feeds(encodings):
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
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def run(self, encodings):
        return self.session.run(["embedding"], self.feeds(encodings))[0]

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


class RustServer:
    """The Rust encoder in `benches/encode.rs --serve` mode: one timed command per line."""

    def __init__(self, binary, model, threads, queries, docs):
        env = dict(os.environ, LTRE_BENCH_MODEL=model, LTRE_BENCH_THREADS=str(threads),
                   LTRE_BENCH_QUERIES=str(queries), LTRE_BENCH_DOCS=str(docs))
        self.proc = subprocess.Popen([binary, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, cwd=ROOT)
        ready = self.proc.stdout.readline().split()
        if ready[:1] != ["ready"] or ready[1:] != [str(queries), str(docs)]:
            raise SystemExit(f"bench_peer: {binary} --serve answered {ready!r}")

    def time_ms(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def paired(enc, rust, queries, docs, passes):
    """Alternates peer and Rust measurements; returns (peer, rust) stats."""
    sides = {"peer": {"query": [], "session": [], "docs": []}, "rust": {"query": [], "session": [], "docs": []}}
    feeds = [enc.feeds([enc.tokenizers["query"].encode(q)]) for q in queries]

    def peer_ms(what, i):
        start = time.perf_counter()
        if what == "query":
            enc.encode([queries[i]], "query")
        elif what == "session":
            enc.session.run(["embedding"], feeds[i])
        else:
            enc.encode(docs, "document")
        return (time.perf_counter() - start) * 1e3

    def both(what, i, n):
        order = ("peer", "rust") if n % 2 == 0 else ("rust", "peer")
        for side in order:
            ms = peer_ms(what, i) if side == "peer" else rust.time_ms(f"{what} {i}".strip())
            sides[side][what].append(ms)
            time.sleep(0.01)  # let the other side's spinning intra-op threads go idle

    for i in range(min(20, len(queries))):
        peer_ms("query", i)
        rust.time_ms(f"query {i}")
    for i in range(len(queries)):
        both("query", i, i)
    for i in range(len(queries)):
        both("session", i, i + 1)
    for n in range(passes):
        both("docs", "", n)
    return sides


def summary(stats, n_docs):
    def pct(xs, p):
        xs = sorted(xs)
        return xs[round((len(xs) - 1) * p)]

    passes = sorted(ms / 1e3 for ms in stats["docs"])
    return {
        "query_p50_ms": pct(stats["query"], 0.5),
        "query_p90_ms": pct(stats["query"], 0.9),
        "query_session_p50_ms": pct(stats["session"], 0.5),
        "doc_pass_s": passes,
        "docs_per_s": n_docs / statistics.median(passes),
    }


def main():
    ensure_venv()
    import onnxruntime
    import tokenizers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="exported model directory (ltre-cli export-onnx)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"))
    ap.add_argument("--queries", type=int, default=N_QUERIES, help="queries timed one by one")
    ap.add_argument("--docs", type=int, default=N_DOCS, help="documents per throughput pass")
    ap.add_argument("--passes", type=int, default=3, help="document passes (median reported)")
    ap.add_argument("--paired", metavar="BENCH_BINARY", help="interleave with the Rust encoder (see above)")
    args = ap.parse_args()

    queries = read_jsonl(os.path.join(args.data, "queries.jsonl"), args.queries, lambda v: v["text"])
    docs = read_jsonl(
        os.path.join(args.data, "corpus.jsonl"),
        args.docs,
        lambda v: f"{v.get('title') or ''} {v.get('text') or ''}",
    )
    enc = PeerEncoder(args.model, args.threads)
    if args.paired:
        rust = RustServer(args.paired, args.model, args.threads, len(queries), len(docs))
        sides = paired(enc, rust, queries, docs, args.passes)
        rust.close()
        peer, ours = summary(sides["peer"], len(docs)), summary(sides["rust"], len(docs))
        print(json.dumps({
            "protocol": "paired",
            "model": args.model,
            "threads": args.threads,
            "n_queries": len(queries),
            "n_docs": len(docs),
            "doc_batch": DOC_BATCH,
            "peer": dict(impl=f"Python onnxruntime {onnxruntime.__version__}, tokenizers {tokenizers.__version__}", **peer),
            "rust": dict(impl="ltre Encoder (ort 2.0.0-rc.15, tokenizers 0.23)", **ours),
            "rust_query_p50_over_peer": ours["query_p50_ms"] / peer["query_p50_ms"],
            "rust_docs_per_s_over_peer": ours["docs_per_s"] / peer["docs_per_s"],
        }, indent=2))
        return

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
    # The session alone, on pre-tokenised queries.
    batches = [enc.feeds([enc.tokenizers["query"].encode(q)]) for q in queries]
    session = []
    for feeds in batches:
        start = time.perf_counter()
        enc.session.run(["embedding"], feeds)
        session.append((time.perf_counter() - start) * 1e3)
    session.sort()

    passes = []
    for _ in range(args.passes):
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
                "query_session_p50_ms": pct(0.5, session),
                "doc_batch": DOC_BATCH,
                "n_docs": len(docs),
                "doc_pass_s": passes,
                "docs_per_s": len(docs) / statistics.median(passes),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
