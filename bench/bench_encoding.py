"""Encoding speed and quality: MiniLM on torch, ONNX Runtime and OpenVINO, at each precision.

For every (backend, precision), in one process, one after the other:

* **setup s**: building the encoder (load; export + quantisation on a cold runtime cache);
* **docs/s** and **CPU ms/doc**: encoding the same random sample of SciFact abstracts
  (``--sample`` docs, batch 64, max_seq_length 256, after an 8-doc warm-up), ``--repeats``
  times, median. CPU ms/doc counts all threads of the process (``time.process_time``): it moves
  less than wall time when other jobs share the CPU;
* **max |diff|** and **min cos** of the sample's vectors against torch fp32;
* **nDCG@10** (and Recall@100) on the full SciFact test split (5,183 abstracts, 300 queries)
  for the variants in ``--ndcg`` (a full corpus encoding each; the others are only sampled).

    python bench/bench_encoding.py                      # ~6 min on 2 cores
    python bench/bench_encoding.py --sample 128 --ndcg torch-fp32,openvino-bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ["torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8"]
MAX_SEQ = 256


def _encode(model, texts, batch_size=64):
    from negforge.mixers.embeddings import encode_texts

    return encode_texts(texts, "bundled", batch_size, MAX_SEQ, model=model)


def measure(variant: str, texts: list[str], args, data) -> dict:
    from negforge.mixers.embeddings import get_encoder
    from negforge.synth.config import EncoderConfig, EvalConfig
    from negforge.trainer.evaluate import metrics_from_run, retrieve

    backend, precision = variant.split("-")
    t = time.perf_counter()
    model = get_encoder("bundled", MAX_SEQ, backend, precision, args.cache_dir, fresh=True)
    setup = time.perf_counter() - t
    _encode(model, texts[:8])
    walls, cpus, vecs = [], [], None
    for _ in range(args.repeats):
        w, c = time.perf_counter(), time.process_time()
        vecs = _encode(model, texts)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    row = {
        "variant": variant,
        "backend": backend,
        "precision": precision,
        "setup_s": round(setup, 1),
        "docs_per_s": round(len(texts) / statistics.median(walls), 1),
        "cpu_ms_per_doc": round(1000 * statistics.median(cpus) / len(texts), 1),
        "walls_s": [round(x, 2) for x in walls],
        "vecs": vecs,
    }
    if variant in args.ndcg:
        cfg = EvalConfig(
            encoder=EncoderConfig(
                model="bundled", backend=backend, precision=precision, cache_dir=args.cache_dir, max_seq_length=MAX_SEQ
            )
        )
        t = time.perf_counter()
        m = metrics_from_run(data.qrels, retrieve("bundled", data, cfg, show_progress=False))
        row.update(
            {
                "ndcg@10": round(m["ndcg@10"], 4),
                "recall@100": round(m["recall@100"], 4),
                "full_eval_s": round(time.perf_counter() - t, 1),
            }
        )
    print(
        f"  {variant}: {row['docs_per_s']} docs/s, {row['cpu_ms_per_doc']} CPU ms/doc, setup {row['setup_s']} s"
        + (f", nDCG@10 {row['ndcg@10']}" if "ndcg@10" in row else ""),
        flush=True,
    )
    return row


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scifact", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--ndcg",
        default="torch-fp32,onnx-int8,openvino-bf16,openvino-int8",
        help="variants evaluated on the full test split (comma-separated; 'all' or 'none')",
    )
    ap.add_argument("--sample", type=int, default=256, help="docs in the timed sample")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--cache-dir",
        default=str(ROOT / ".cache" / "negforge" / "bench-encoding"),
        help="corpus embeddings of the nDCG runs (a matrix already there is reused; see 'cached')",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    from negforge.synth.data import load_beir

    variants = args.variants.split(",")
    args.ndcg = variants if args.ndcg == "all" else [] if args.ndcg == "none" else args.ndcg.split(",")
    shutil.rmtree(Path(args.cache_dir) / "runtimes", ignore_errors=True)  # exports are timed cold (setup s)
    data = load_beir(args.scifact, "test")
    texts = data.corpus.full_texts()
    sample = [texts[i] for i in random.Random(0).sample(range(len(texts)), args.sample)]
    load = [os.getloadavg()[0]]
    print(f"{len(sample)} sampled docs; load average {load[0]:.1f}", flush=True)
    rows = []
    from negforge.mixers.embeddings import cache_path

    for v in variants:
        b, p = v.split("-")
        cached = v in args.ndcg and cache_path("bundled", data.corpus, args.cache_dir, MAX_SEQ, b, p).exists()
        row = measure(v, sample, args, data)
        row["cached"] = cached
        rows.append(row)
        load.append(os.getloadavg()[0])
    ref = next((r["vecs"] for r in rows if r["variant"] == "torch-fp32"), None)
    for r in rows:
        v = r.pop("vecs")
        if ref is not None:
            r["max_abs_diff"] = float(f"{np.abs(v - ref).max():.2e}")
            r["min_cos"] = round(float((v * ref).sum(1).min()), 5)
    base = next((r for r in rows if r["variant"] == "torch-fp32"), None)
    write(args, rows, base, load)


def write(args, rows, base, load) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_1m": load,
        },
        "sample": args.sample,
        "repeats": args.repeats,
        "max_seq_length": MAX_SEQ,
        "rows": rows,
    }
    (out / "encoding.json").write_text(json.dumps(result, indent=2) + "\n")
    head = [
        "backend",
        "precision",
        "docs/s",
        "× torch",
        "CPU ms/doc",
        "setup s",
        "max |diff|",
        "min cos",
        "nDCG@10",
        "Δ nDCG@10",
        "Recall@100",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        nd = r.get("ndcg@10")
        delta = f"{nd - base['ndcg@10']:+.4f}" if nd is not None and base and "ndcg@10" in base else "–"
        speed = f"{r['docs_per_s'] / base['docs_per_s']:.2f}" if base else "–"
        lines.append(
            "| "
            + " | ".join(
                str(x)
                for x in (
                    r["backend"],
                    r["precision"],
                    r["docs_per_s"],
                    speed,
                    r["cpu_ms_per_doc"],
                    r["setup_s"],
                    r.get("max_abs_diff", "–"),
                    r.get("min_cos", "–"),
                    "–" if nd is None else nd,
                    delta,
                    r.get("recall@100", "–"),
                )
            )
            + " |"
        )
    table = "\n".join(lines)
    cached = [r["variant"] for r in rows if r.get("cached")]
    (out / "encoding.md").write_text(
        "# Encoding benchmark: all-MiniLM-L6-v2 on SciFact\n\n"
        + table
        + f"\n\ndocs/s: median of {args.repeats} encodings of the same {args.sample} random SciFact abstracts "
        f"(batch 64, max_seq_length {MAX_SEQ}); setup = load + export/quantise on a cold runtime cache. "
        "nDCG@10 / Recall@100: the full SciFact test split (5,183 abstracts, 300 queries); – = not evaluated "
        f"(fp32 runtimes match torch to ~1e-7, see max |diff|). {os.cpu_count()} CPUs, load average "
        f"{min(load):.1f}-{max(load):.1f} during the run (other jobs shared the machine)."
        + (f" Corpus matrices reused from the cache: {', '.join(cached)}." if cached else "")
        + "\n\nCommand: `python bench/bench_encoding.py "
        + " ".join(sys.argv[1:])
        + "`\n"
    )
    print(table)


if __name__ == "__main__":
    main()
