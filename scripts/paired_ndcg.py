# Paired per-query comparison of two evaluations (`ltre-cli eval --json --per-query`, same queries
# and qrels): nDCG@10 of A, the mean per-query difference A - B and its bootstrap 95% interval
# (5000 resamples of the queries, seed 7). The metric values are ltre's own, per query.
# Usage: python3 scripts/paired_ndcg.py A.json B.json
import json, random, sys

a, b = (json.load(open(p))["per_query"] for p in sys.argv[1:3])
if set(a) != set(b):
    sys.exit(f"the two evaluations cover different queries ({len(a)} and {len(b)}): compare runs on the same qrels")
qs = sorted(a)
diff = [a[q]["nDCG@10"] - b[q]["nDCG@10"] for q in qs]
mean_a = sum(a[q]["nDCG@10"] for q in qs) / len(qs)
random.seed(7)
boots = sorted(sum(random.choice(diff) for _ in diff) / len(diff) for _ in range(5000))
print(f"A {mean_a:.4f}  A-B {sum(diff)/len(diff):+.4f}  95% [{boots[125]:+.4f}, {boots[4874]:+.4f}]  n={len(qs)}")
