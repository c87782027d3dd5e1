# Could a query-dependent fusion weight beat one fixed weight? On queries the encoder never trained
# on (the base encoder over SciFact's or Cranfield's training queries), each query's nDCG@10 of the
# normalised linear hybrid at weights 0.0..1.0 (ltre's own per-query values, `eval --per-query`),
# then per-query weights: the oracle (the best weight per query, an upper bound) and one learned
# from query-performance features of the two legs (top score, top-1/top-10 gaps, overlap of their
# top 10 and top 100) by ridge regression per weight, 5-fold cross-validated against the fixed
# weight chosen on the same training folds. Nothing here reads test qrels.
# Usage: python3 scripts/query_fusion_cv.py CLI INDEX QUERIES QRELS OUT_DIR [eval args...]
# (OUT_DIR receives the two legs' TREC runs.)
import json, math, os, random, subprocess, sys
from collections import defaultdict

cli, index, queries, qrels, out = sys.argv[1:6]
extra = sys.argv[6:]
os.makedirs(out, exist_ok=True)
ALPHAS = [i / 10 for i in range(11)]

def ev(*args):
    """ltre's own per-query values of one evaluation (recomputed every call: no stale reuse)."""
    result = subprocess.run([cli, "eval", "--index", index, "--queries", queries, "--qrels", qrels,
                             "--encoder", "base", "--depth", "100", "--json", "--per-query",
                             *extra, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"ltre-cli eval {' '.join(args)} failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)["per_query"]

def leg(mode):
    """Each query's result list (doc, score), best first, from the leg's TREC run."""
    run = os.path.join(out, f"{mode}.trec")
    ev("--mode", mode, "--run-file", run)
    lists = defaultdict(list)
    for line in open(run):
        q, _, d, _, s, _ = line.split()
        lists[q].append((d, float(s)))
    return lists

# Weights 0 and 1 are the served fusion too, ranking like the BM25 and dense legs alone.
per_alpha = [ev("--mode", "hybrid", "--fusion", "linear", "--alpha", str(a)) for a in ALPHAS]
dense, bm25 = leg("dense"), leg("bm25")
qs = sorted(per_alpha[0])
table = {q: [p[q]["nDCG@10"] for p in per_alpha] for q in qs}

def features(q):
    d, b = [s for _, s in dense[q]], [s for _, s in bm25[q]]
    gap = lambda s, k: (s[0] - s[min(k, len(s) - 1)]) / (s[0] - s[-1] + 1e-9) if s else 0.0
    top = lambda l, k: {x for x, _ in l[:k]}
    return [d[0] if d else 0.0, gap(d, 9), b[0] if b else 0.0, gap(b, 9),
            len(top(dense[q], 10) & top(bm25[q], 10)) / 10,
            len(top(dense[q], 100) & top(bm25[q], 100)) / 100]

mean = lambda xs: sum(xs) / len(xs)

def ridge(X, y, lam):
    X = [[1.0] + x for x in X]
    m = len(X[0])
    A = [[sum(r[i] * r[j] for r in X) + (lam if i == j and i else 0.0) for j in range(m)] + [sum(r[i] * t for r, t in zip(X, y))] for i in range(m)]
    for c in range(m):  # Gauss-Jordan with partial pivoting
        p = max(range(c, m), key=lambda r: abs(A[r][c]))
        A[c], A[p] = A[p], A[c]
        for r in range(m):
            if r != c:
                f = A[r][c] / A[c][c]
                A[r] = [a - f * b for a, b in zip(A[r], A[c])]
    w = [A[i][m] / A[i][i] for i in range(m)]
    return lambda x: w[0] + sum(a * b for a, b in zip(w[1:], x))

print(f"{len(qs)} queries; fixed weight: " + "  ".join(f"{a:.1f} {mean([table[q][i] for q in qs]):.4f}" for i, a in enumerate(ALPHAS)))
print(f"oracle per-query weight: {mean([max(table[q]) for q in qs]):.4f}")
random.seed(0)
order = qs[:]
random.shuffle(order)
feats = {q: features(q) for q in qs}
for lam in [1, 10, 100, 1000]:
    learned, fixed = [], []
    for k in range(5):
        test = order[k::5]
        held = set(test)
        train = [q for q in order if q not in held]
        cols = list(zip(*[feats[q] for q in train]))
        mu = [mean(c) for c in cols]
        sd = [math.sqrt(mean([(x - m) ** 2 for x in c])) + 1e-9 for c, m in zip(cols, mu)]
        z = lambda q: [(x - m) / s for x, m, s in zip(feats[q], mu, sd)]
        best = max(range(len(ALPHAS)), key=lambda i: mean([table[q][i] for q in train]))
        models = [ridge([z(q) for q in train], [table[q][i] for q in train], lam) for i in range(len(ALPHAS))]
        for q in test:
            x = z(q)
            learned.append(table[q][max(range(len(ALPHAS)), key=lambda i: models[i](x))])
            fixed.append(table[q][best])
    diff = [a - b for a, b in zip(learned, fixed)]
    se = math.sqrt(mean([(d - mean(diff)) ** 2 for d in diff]) / len(diff))
    print(f"ridge lambda {lam:>4}: learned {mean(learned):.4f}  fixed {mean(fixed):.4f}  learned - fixed {mean(diff):+.4f} (s.e. {se:.4f})")
