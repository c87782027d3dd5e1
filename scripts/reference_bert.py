#!/usr/bin/env python3
"""Independent reference embeddings for ltre's parity test.

A BERT forward pass written from scratch in numpy (float64): embeddings, multi-head
self-attention, erf-GELU (math.erf), LayerNorm, masked mean pooling and L2 normalisation,
reading model.safetensors directly (header parsed with json + struct) and tokenising with the
Hugging Face `tokenizers` package. It shares no code with ltre (no ONNX, no ONNX Runtime), so
agreement with `ltre_core::Encoder` checks the whole Rust export + runtime path.

Tokenisation: padding off; truncation at 64 tokens for queries and 256 for documents
(special tokens included). These are the manifest defaults `ltre-cli export-onnx` writes for
all-MiniLM-L6-v2 (query 64; document = sentence_bert_config.json max_seq_length 256); the
fixture records the lengths and tests/parity.rs checks them against the exported manifest.

Usage (creates .ltre/venv-ref on first run):
    python3 scripts/reference_bert.py [--model .ltre/models/all-MiniLM-L6-v2]
                                      [--out tests/fixtures/parity/minilm_reference.json]
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".ltre", "venv-ref")
REQUIREMENTS = os.path.join(ROOT, "scripts", "requirements-reference.txt")

QUERY_MAX_LENGTH = 64
DOCUMENT_MAX_LENGTH = 256


def ensure_venv():
    """Re-executes this script inside .ltre/venv-ref, creating it if needed."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(python):
        print(f"reference: creating {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
        subprocess.check_call(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", REQUIREMENTS]
        )
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def long_text(words=1000):
    """A deterministic ~1,000-word text (far beyond 256 tokens); a fixed LCG picks the words."""
    vocab = (
        "the of and to in a is that for it as was with be by on not he this are or his from at which "
        "but have an they you were her she there been one all we their has would when if so what no "
        "protein cell gene expression tumour patients trial vitamin deficiency receptor signalling "
        "mitochondria inflammation antibody vaccine cohort randomised placebo significant increase "
        "decrease mortality risk dose response pathway kinase mutation sequencing"
    ).split()
    state = 12345
    out = []
    for i in range(words):
        state = (1103515245 * state + 12345) % (1 << 31)
        word = vocab[state % len(vocab)]
        if i % 17 == 0:
            word = word.capitalize()
        out.append(word + ("." if i % 17 == 16 else ""))
    return " ".join(out)


def sentences():
    """(text, kind) pairs; written here, not taken from any data set."""
    long_query = " ".join(["what is the role of vitamin d receptor signalling in tumour growth"] * 12)
    return [
        ("", "document"),
        ("", "query"),
        ("what causes scurvy", "query"),
        ("Does vitamin D supplementation reduce the risk of fractures in older adults?", "query"),
        ("COVID-19 mRNA vaccines: efficacy of 94.1% after 2 doses (n=30,420)", "query"),
        (long_query, "query"),
        ("Scurvy is caused by a prolonged lack of vitamin C in the diet.", "document"),
        (
            "Mitochondrial dysfunction contributes to neurodegeneration. We measured ATP synthesis "
            "in 48 patients and found a 23% decrease relative to age-matched controls.",
            "document",
        ),
        (long_text(), "document"),
        ("Café déjà vu: a naïve façade in Zürich, São Paulo and Kraków.", "document"),
        ("自然语言处理是人工智能的一个重要分支。", "document"),
        ("東京は日本の首都です。ソウルは韓国の首都입니다.", "document"),
        ("I love pizza 🍕🔥 and ☕ coffee! 👍🏽 🇫🇷", "document"),
        ("Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.", "document"),
        ("Быстрая коричневая лиса прыгает через ленивую собаку.", "query"),
        ("αβγ δεσμός β-κατενίνης και μεταλλάξεις στο γονίδιο APC", "query"),
        ("THE QUICK BROWN FOX jumps over the lazy dog", "document"),
        ("  tabs\tand\nnewlines\r\n   and   extra   spaces  ", "document"),
        ("p53 (TP53) mutations; IL-6/STAT3 signalling -> EGFR-TKI resistance [ref 12]", "document"),
        ("dense retrieval dense retrieval dense retrieval", "query"),
    ]


def load_safetensors(path):
    """name -> float64 ndarray for every F32 tensor (leading `bert.` stripped)."""
    import numpy as np

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"]).astype(np.float64)
        tensors[name[len("bert."):] if name.startswith("bert.") else name] = arr
    return tensors


class Bert:
    """BERT encoder + mean pooling + L2 norm, float64, one sequence at a time (no padding)."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = json.load(f)
        self.w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.heads = self.config["num_attention_heads"]
        self.eps = self.config["layer_norm_eps"]
        assert self.config.get("hidden_act", "gelu") == "gelu", "only erf-GELU is implemented"
        # Mean pooling and L2 normalisation are what this checkpoint's sentence-transformers
        # modules say; refuse a checkpoint that says otherwise rather than mis-pool it.
        with open(os.path.join(model_dir, "1_Pooling", "config.json")) as f:
            assert json.load(f)["pooling_mode_mean_tokens"], "only mean pooling is implemented"
        with open(os.path.join(model_dir, "modules.json")) as f:
            assert any(m["type"].endswith("Normalize") for m in json.load(f)), "expected a Normalize module"

    def linear(self, x, prefix):
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    def layer_norm(self, x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / (var + self.eps) ** 0.5 * self.w[prefix + ".weight"] + self.w[prefix + ".bias"]

    @staticmethod
    def gelu(x):
        import numpy as np

        erf = np.frompyfunc(math.erf, 1, 1)
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))

    def embed(self, ids, type_ids):
        import numpy as np

        pos = np.arange(len(ids))
        x = (
            self.w["embeddings.word_embeddings.weight"][ids]
            + self.w["embeddings.position_embeddings.weight"][pos]
            + self.w["embeddings.token_type_embeddings.weight"][type_ids]
        )
        return self.layer_norm(x, "embeddings.LayerNorm")

    def attention(self, x, p):
        import numpy as np

        seq, hidden = x.shape
        d = hidden // self.heads

        def split(t):  # [seq, hidden] -> [heads, seq, d]
            return t.reshape(seq, self.heads, d).transpose(1, 0, 2)

        q = split(self.linear(x, p + ".attention.self.query"))
        k = split(self.linear(x, p + ".attention.self.key"))
        v = split(self.linear(x, p + ".attention.self.value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(seq, hidden)
        return self.layer_norm(self.linear(ctx, p + ".attention.output.dense") + x, p + ".attention.output.LayerNorm")

    def layer(self, x, i):
        p = f"encoder.layer.{i}"
        x = self.attention(x, p)
        h = self.gelu(self.linear(x, p + ".intermediate.dense"))
        return self.layer_norm(self.linear(h, p + ".output.dense") + x, p + ".output.LayerNorm")

    def encode(self, ids, type_ids):
        import numpy as np

        x = self.embed(np.asarray(ids), np.asarray(type_ids))
        for i in range(self.config["num_hidden_layers"]):
            x = self.layer(x, i)
        pooled = x.mean(0)  # every token is real: no padding
        return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    ensure_venv()
    from tokenizers import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, ".ltre", "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "parity", "minilm_reference.json"))
    args = ap.parse_args()

    bert = Bert(args.model)
    max_length = {"query": QUERY_MAX_LENGTH, "document": DOCUMENT_MAX_LENGTH}
    tokenizers = {}
    for kind, n in max_length.items():
        tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(n)
        tokenizers[kind] = tok

    rows = []
    for text, kind in sentences():
        enc = tokenizers[kind].encode(text)
        vec = bert.encode(enc.ids, enc.type_ids)
        rows.append(
            {
                "text": text,
                "kind": kind,
                "input_ids": enc.ids,
                "vector": [float(f"{v:.7g}") for v in vec],
            }
        )
        print(f"reference: {kind:8} {len(enc.ids):3} tokens  {text[:40]!r}", file=sys.stderr)

    fixture = {
        "model": os.path.basename(os.path.normpath(args.model)),
        "generator": "scripts/reference_bert.py (numpy float64 BERT, tokenizers "
        + __import__("tokenizers").__version__
        + ")",
        "query_max_length": QUERY_MAX_LENGTH,
        "document_max_length": DOCUMENT_MAX_LENGTH,
        "pooling": "mean",
        "normalize": True,
        "sentences": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    # One sentence per line keeps the fixture diffable.
    head = json.dumps({k: v for k, v in fixture.items() if k != "sentences"}, ensure_ascii=False, indent=1)
    body = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows)
    with open(args.out, "w") as f:
        f.write(head[:-2] + ',\n "sentences": [\n' + body + "\n ]\n}\n")
    print(f"reference: wrote {len(rows)} vectors to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
