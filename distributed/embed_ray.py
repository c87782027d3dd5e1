#!/usr/bin/env python3
"""Embed a BEIR corpus.jsonl with Ray Data into ltre's Parquet vector shards.

The same model directory `ltre-cli export-onnx` writes (model.onnx + tokenizer.json +
manifest.json) runs in ONNX Runtime on every Ray worker; the output is the format
`ltre-cli index --vectors DIR` reads (tantivy-ltre `vectors`): columns `id` (utf8) and
`vector` (fixed_size_list<float32, dim>), file metadata `ltre.format_version`,
`ltre.weights_sha256`, `ltre.dim`, `ltre.model`.

What is computed matches ltre_core::Encoder::encode_documents:
- text: ltre_core::data::Doc::dense_text: "{title}. {text}" (no extra period when the trimmed
  title ends in . ? ! :), the text alone when the title is empty;
- tokens: tokenizer.json with its padding off and truncation at manifest.document_max_length
  (special tokens included), padded per batch to the longest text with the tokenizer's pad id
  (mask 0, type 0); texts sorted by length inside a batch (dynamic padding);
- output: model.onnx's `embedding` (already pooled and, when manifest.normalize, L2-normalised
  inside the graph).
Ids must be unique: unlike `ltre-cli embed`, a repeated `_id` is not dropped here, and
`ltre-cli index --vectors` refuses the output naming both files.
Floating-point sums may differ from the Rust run in the last bits (other batches, other
threads): cosine >= 0.9999, not bit-identical.

Local run:      python distributed/embed_ray.py --corpus C --model M --out DIR --num-workers 2
On a cluster:   ray start --head (and `ray start --address HEAD:6379` on the workers), then
                python distributed/embed_ray.py --address auto ... (or ray://HEAD:10001).
Every worker must see --model at the same path (shared filesystem, or the same path copied to
every node); --corpus is read by Ray Data (a shared path or s3://...); the vectors stream back
to the driver, which writes --out (so --out needs no shared filesystem).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

FORMAT_VERSION = "1"


def dense_text(title: str, text: str) -> str:
    """ltre_core::data::Doc::dense_text."""
    t = title.strip()
    if not t:
        return text
    if t.endswith((".", "?", "!", ":")):
        return f"{t} {text}"
    return f"{t}. {text}"


def parse_line(line: str) -> tuple[str, str]:
    """(id, dense text) of a corpus line, with the Rust reader's rules for the fields."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object per line")
    raw_id = obj.get("_id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, float)):
        raise ValueError("missing or non-string field `_id`")
    doc_id = raw_id if isinstance(raw_id, str) else json.dumps(raw_id)
    if not doc_id:
        raise ValueError("empty `_id`")
    title = obj.get("title") or ""
    text = obj.get("text")
    if not isinstance(text, str) or not isinstance(title, str):
        raise ValueError("field `text` (required) and `title` must be strings")
    return doc_id, dense_text(title, text)


class Embedder:
    """One ONNX Runtime session per Ray actor (loaded once, reused for every batch)."""

    def __init__(self, model_dir: str, batch_size: int, threads: int, device: str):
        import numpy as np  # noqa: F401  (imported in the worker)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        with open(os.path.join(model_dir, "manifest.json")) as f:
            manifest = json.load(f)
        self.dim = int(manifest["embedding_dim"])
        self.batch_size = batch_size
        tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        padding = tok.padding
        self.pad_id = int(padding["pad_id"]) if padding else 0
        tok.no_padding()
        tok.enable_truncation(max_length=int(manifest["document_max_length"]))
        self.tokenizer = tok
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            print("embed_ray: no CUDA execution provider; encoding on the CPU", file=sys.stderr)
        self.session = ort.InferenceSession(
            os.path.join(model_dir, "model.onnx"), options, providers=providers
        )

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        ids, texts = [], []
        for line in batch["text"]:
            try:
                doc_id, text = parse_line(str(line))
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                raise ValueError(f"corpus line {str(line)[:80]!r}...: {e}; fix the line and rerun") from None
            ids.append(doc_id)
            texts.append(text)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if texts:
            encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
            # Longest first, so similar lengths share a padded batch (as the Rust encoder).
            order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                seq = max(len(encodings[i].ids) for i in chunk)
                input_ids = np.full((len(chunk), seq), self.pad_id, dtype=np.int64)
                mask = np.zeros((len(chunk), seq), dtype=np.int64)
                types = np.zeros((len(chunk), seq), dtype=np.int64)
                for row, i in enumerate(chunk):
                    e = encodings[i]
                    n = len(e.ids)
                    input_ids[row, :n] = e.ids
                    mask[row, :n] = e.attention_mask
                    types[row, :n] = e.type_ids
                (embedding,) = self.session.run(
                    ["embedding"],
                    {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types},
                )
                out[chunk] = embedding
        return {"id": np.array(ids, dtype=object), "vector": out}


def write_file(path: str, ids, vectors, metadata: dict) -> None:
    """Writes one shard through a hidden temporary sibling and a rename (never a half file)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    item = pa.field("item", pa.float32(), nullable=False)
    schema = pa.schema(
        [pa.field("id", pa.string(), nullable=False),
         pa.field("vector", pa.list_(item, dim), nullable=False)],
        metadata={k.encode(): v.encode() for k, v in metadata.items()},
    )
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    table = pa.Table.from_arrays(
        [pa.array(list(ids), pa.string()), pa.FixedSizeListArray.from_arrays(flat, type=pa.list_(item, dim))],
        schema=schema,
    )
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="snappy")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="BEIR corpus.jsonl (local path or URI Ray Data reads)")
    parser.add_argument("--model", required=True, help="exported model directory (ltre-cli export-onnx)")
    parser.add_argument("--out", required=True, help="output directory of Parquet shards (new or empty)")
    parser.add_argument("--address", default=None, help="Ray cluster address (`auto`, ray://HOST:10001); default: a local Ray")
    parser.add_argument("--num-workers", type=int, default=2, help="ONNX Runtime actors (one session each)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per actor (0: cores / workers)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per ONNX Runtime run")
    parser.add_argument("--rows-per-file", type=int, default=100_000, help="vectors per output file")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CUDA when the onnxruntime-gpu provider is there (one GPU per actor)")
    args = parser.parse_args()

    import numpy as np
    import ray

    with open(os.path.join(args.model, "manifest.json")) as f:
        manifest = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    existing = [n for n in os.listdir(args.out) if n.endswith(".parquet") and not n.startswith(".")]
    if existing:
        print(f"error: {args.out}: already holds {len(existing)} .parquet files; use a new --out directory",
              file=sys.stderr)
        return 1
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.num_workers))
    started = time.time()
    if args.address:
        ray.init(address=args.address)
    else:
        # One logical CPU more than the actors hold: the read tasks need one to run beside them.
        ray.init(num_cpus=args.num_workers * threads + 1, include_dashboard=False)
    import onnxruntime as ort

    use_gpu = args.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers() \
        and ray.cluster_resources().get("GPU", 0) > 0
    ds = ray.data.read_text(os.path.abspath(args.corpus) if "://" not in args.corpus else args.corpus)
    # Several blocks per actor, so that every actor gets work even from a single file.
    ds = ds.repartition(args.num_workers * 4)
    ds = ds.map_batches(
        Embedder,
        fn_constructor_args=(os.path.abspath(args.model), args.batch_size, threads,
                             "cuda" if use_gpu else "cpu"),
        compute=ray.data.ActorPoolStrategy(size=args.num_workers),
        batch_size=args.batch_size * 8,
        batch_format="numpy",
        num_cpus=0 if use_gpu else threads,
        num_gpus=1 if use_gpu else 0,
    )
    metadata = {
        "ltre.format_version": FORMAT_VERSION,
        "ltre.weights_sha256": manifest["weights_sha256"],
        "ltre.dim": str(manifest["embedding_dim"]),
        "ltre.model": os.path.basename(os.path.normpath(args.model)),
        "ltre.batch_size": str(args.batch_size),
        "ltre.producer": f"distributed/embed_ray.py (ray {ray.__version__}, onnxruntime {ort.__version__})",
    }
    ids, vectors, written, files = [], [], 0, 0

    def flush(final: bool) -> None:
        # Files of exactly --rows-per-file vectors, the rest in the last one.
        nonlocal ids, vectors, written, files
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)
        while len(ids) >= args.rows_per_file or (final and ids):
            n = min(len(ids), args.rows_per_file)
            write_file(os.path.join(args.out, f"ray-{files:05}.parquet"), ids[:n], matrix[:n], metadata)
            written, files = written + n, files + 1
            ids, matrix = ids[n:], matrix[n:]
        vectors = [matrix] if ids else []

    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        ids.extend(str(i) for i in batch["id"])
        vectors.append(np.asarray(batch["vector"], dtype=np.float32))
        flush(final=False)
    flush(final=True)
    print(f"embed_ray: wrote {written} vectors in {files} files to {args.out} "
          f"({args.num_workers} workers, {'GPU' if use_gpu else 'CPU'}, {time.time() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
