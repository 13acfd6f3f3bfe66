"""Corpus encoding in one process (the anchor: sentence-transformers' ``encode``) and in the multi-process pool
(``encoder.processes``: ``start_multi_process_pool`` + ``encode(pool=...)``), the same documents, the bundled
MiniLM, side by side in one run. Reports docs/s (pool start included, and apart), the max |difference| of the
vectors, and the load average. Results: ``bench/results/encode_pool.json`` and ``encode_pool.md``.

    python bench/bench_encode_pool.py                       # 256 SciFact abstracts, 1 and 2 processes
    python bench/bench_encode_pool.py --docs 2000 --processes 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    from negforge.mixers.embeddings import EncodePool, encode_texts, get_encoder

    with open(Path(args.data) / "corpus.jsonl") as f:
        docs = [json.loads(next(f)) for _ in range(args.docs)]
    texts = [(d.get("title", "") + " " + d["text"]).strip() for d in docs]
    model = get_encoder("bundled", 256, cache_dir=tempfile.mkdtemp())
    encode_texts(texts[:8], "bundled", model=model)  # warm
    rows, ref = [], None
    for p in args.processes:
        before = loadavg()
        t0 = time.perf_counter()
        if p == 1:
            vecs = encode_texts(texts, "bundled", args.batch_size, model=model)
            start_s = 0.0
        else:
            with EncodePool(model, p) as pool:
                start_s = time.perf_counter() - t0
                vecs = pool.encode(texts, args.batch_size)
        wall = time.perf_counter() - t0
        ref = vecs if ref is None else ref
        rows.append(
            {
                "processes": p,
                "run": "anchor: one process" if p == 1 else f"ours: pool of {p}",
                "docs": len(texts),
                "wall_s": round(wall, 2),
                "pool_start_s": round(start_s, 2),
                "docs_per_s": round(len(texts) / wall, 1),
                "docs_per_s_after_start": round(len(texts) / (wall - start_s), 1),
                "max_abs_diff": float(np.abs(vecs - ref).max()),
                "loadavg_before": before,
            }
        )
        print(rows[-1], flush=True)
    result = {"rows": rows, "cpus": os.cpu_count(), "command": "python " + " ".join(sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encode_pool.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Corpus encoding: one process vs sentence-transformers' multi-process pool",
        "",
        f"`{result['command']}`; {len(texts)} SciFact abstracts, bundled MiniLM, {os.cpu_count()} CPUs.",
        "",
        "| run | wall s | pool start s | docs/s | docs/s after start | max abs diff | load before |",
        "|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['run']} | {r['wall_s']} | {r['pool_start_s']} | {r['docs_per_s']} | {r['docs_per_s_after_start']} "
        f"| {r['max_abs_diff']:.2e} | {r['loadavg_before']} |"
        for r in rows
    ]
    (out / "encode_pool.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
