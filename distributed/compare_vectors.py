#!/usr/bin/env python3
"""Compare two directories of ltre Parquet vector shards: same ids, same metadata fingerprint,
and every pair of vectors with cosine >= --min-cosine. Exit 1 otherwise.

    python distributed/compare_vectors.py RUST_DIR RAY_DIR [--min-cosine 0.9999]
"""
import argparse
import os
import sys

import numpy as np
import pyarrow.parquet as pq


def load(directory):
    ids, vectors, shas = [], [], set()
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or not name.endswith(".parquet"):
            continue
        path = os.path.join(directory, name)
        meta = pq.read_metadata(path).metadata or {}
        shas.add(meta.get(b"ltre.weights_sha256", b"?").decode())
        table = pq.read_table(path)
        ids.extend(table.column("id").to_pylist())
        dim = table.schema.field("vector").type.list_size
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        vectors.append(flat.reshape(-1, dim))
    return ids, np.concatenate(vectors), shas


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--min-cosine", type=float, default=0.9999)
    args = p.parse_args()
    ids_a, va, sha_a = load(args.a)
    ids_b, vb, sha_b = load(args.b)
    problems = []
    if sha_a != sha_b or len(sha_a) != 1:
        problems.append(f"model fingerprints differ: {sha_a} vs {sha_b}")
    if len(set(ids_a)) != len(ids_a) or len(set(ids_b)) != len(ids_b):
        problems.append("duplicate ids")
    if set(ids_a) != set(ids_b):
        problems.append(f"id sets differ: {len(set(ids_a) - set(ids_b))} only in a, {len(set(ids_b) - set(ids_a))} only in b")
    common = sorted(set(ids_a) & set(ids_b))
    ra = {d: i for i, d in enumerate(ids_a)}
    rb = {d: i for i, d in enumerate(ids_b)}
    a = va[[ra[d] for d in common]].astype(np.float64)
    b = vb[[rb[d] for d in common]].astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    worst = int(np.argmin(cos)) if len(cos) else 0
    print(f"compare: {len(common)} common ids ({len(ids_a)} vs {len(ids_b)}), dim {va.shape[1]}, "
          f"min cosine {cos.min():.9f} (id {common[worst]}), mean cosine {cos.mean():.9f}, "
          f"max |a-b| {np.abs(a - b).max():.3g}, bit-identical rows {(a == b).all(1).sum()}")
    if cos.min() < args.min_cosine:
        problems.append(f"min cosine {cos.min():.9f} < {args.min_cosine}")
    for problem in problems:
        print(f"compare: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
