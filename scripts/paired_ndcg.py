# Paired per-query comparison of two TREC runs: nDCG@10 of run A, the mean per-query difference A - B
# and its bootstrap 95% interval (5000 resamples of the queries, seed 7), trec_eval's linear gains.
# Usage: python3 scripts/paired_ndcg.py QRELS.tsv A.trec B.trec   (BEIR qrels: query, doc, grade)
import sys, math, random, collections
qrels = collections.defaultdict(dict)
for i, line in enumerate(open(sys.argv[1])):
    p = line.split()
    if not p or (i == 0 and not p[-1].lstrip('-').isdigit()):
        continue
    q, d, g = (p[0], p[1], int(p[2])) if len(p) == 3 else (p[0], p[2], int(p[3]))
    if g > 0:
        qrels[q][d] = g
def run(path):
    r = collections.defaultdict(list)
    for line in open(path):
        q, _, d, rank, s, _ = line.split()
        r[q].append((float(s), d))
    return {q: [d for s, d in sorted(v, key=lambda x: (-x[0], x[1]))] for q, v in r.items()}
def ndcg(ranked, rel):
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rel.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0
a, b = run(sys.argv[2]), run(sys.argv[3])
qs = sorted(qrels)
diff = [ndcg(a.get(q, []), qrels[q]) - ndcg(b.get(q, []), qrels[q]) for q in qs]
ma = sum(ndcg(a.get(q, []), qrels[q]) for q in qs) / len(qs)
random.seed(7)
boots = sorted(sum(random.choice(diff) for _ in diff) / len(diff) for _ in range(5000))
print(f"A {ma:.4f}  A-B {sum(diff)/len(diff):+.4f}  95% [{boots[125]:+.4f}, {boots[4874]:+.4f}]  n={len(qs)}")
