"""Mining speed and memory: negforge's BM25 and dense miners next to sentence-transformers'
``mine_hard_negatives`` on the same inputs, on SciFact and on a synthetic 1M-passage corpus.

Every measured run is its own subprocess (fresh interpreter, so ``ru_maxrss`` is that run's
peak resident memory); the table gives the wall time of the mining call alone, the RSS before
it (corpus, records, model loaded) and the peak RSS of the process.

Inputs, identical for both libraries:

* **queries**: the 809 SciFact train claims with their qrels positives; query embeddings are
  MiniLM (``bundled:all-MiniLM-L6-v2``), computed once here and handed to both (negforge via
  ``miner_options={"dense": {"query_embeddings": ...}}``, sentence-transformers through its
  own ``cache_folder``: a symlink named ``query_embeddings_<its sha256 key>.npy``);
* **SciFact corpus** (5,183 abstracts): the MiniLM embeddings from negforge's cache
  (``.cache/negforge/embeddings``, computed once if missing: ~2 min on 2 cores, not timed),
  handed to sentence-transformers as ``corpus_embeddings_<key>.npy`` in its cache folder;
* **1M corpus**: the 5,183 SciFact abstracts + synthetic passages. Passage i is derived from
  a random SciFact abstract j: its text is 24 words sampled from j plus 6 words from the whole
  vocabulary; its vector is ``normalise(E[j] + 0.8 * N(0, I) / sqrt(384))`` (cosine ~0.78 to
  E[j]). Encoding 1M real passages with MiniLM on 2 cores would take ~7 hours, so the dense
  runs measure retrieval + mining over precomputed embeddings, not encoding. One ``.npy`` file
  holds them; negforge memory-maps it, sentence-transformers ``np.load``s it (what its cache
  does).

Settings (both): ``num_negatives=5``, ``range_min=0``, ``range_max=50``, ``sampling=top``,
``relative_margin=0.05`` for dense. sentence-transformers: ``output_format="n-tuple"``,
``use_faiss`` False (torch matmul + topk) and True (``IndexFlatIP``). negforge dense:
``flat`` (exact, chunked over the memmap) and ``ivf`` (faiss IVF-Flat, nlist = sqrt(N),
build time included; a second run reuses the saved index). BM25: negforge (bm25s; index build
included, then a second run on the saved index); on SciFact also rank_bm25 (retrieval only,
same tokens) for reference; sentence-transformers has no BM25 miner.
"Overlap" = mean share of a query's mined negatives that the reference also mined (negforge
flat; sentence-transformers, first row per query), over the queries both mined.

    python bench/bench_mining.py                 # ~10 min on 2 cores, ~6 GB peak (ST at 1M)
    python bench/bench_mining.py --n-total 200000 --skip-st-faiss
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {"num_negatives": 5, "range_min": 0, "range_max": 50, "relative_margin": 0.05}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec,
    so a child would report its parent's peak when that is higher."""
    return _status_mb("VmHWM")


def current_rss_mb() -> float:
    return _status_mb("VmRSS")


# ---- preparation (parent process) ------------------------------------------------------------


def prep_scifact(args, work: Path) -> dict:
    import numpy as np

    from negforge.mixers.embeddings import corpus_embeddings, encode_texts
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.synth.models import DEFAULT_ENCODER

    beir = load_beir(args.scifact, "train")
    records = records_from_beir(beir)
    emb = corpus_embeddings(beir.corpus, DEFAULT_ENCODER, args.cache_dir, 64, 256, show_progress=True)
    q_path = work / "queries.npy"
    if not q_path.is_file():
        np.save(q_path, encode_texts([r.query for r in records], DEFAULT_ENCODER, 64, 256))
    sci = work / "scifact_corpus.npy"
    if not sci.is_file():
        np.save(sci, np.asarray(emb))
    return {"emb": str(emb.filename), "queries": str(q_path), "npy": str(sci), "n": len(beir.corpus)}


def prep_synthetic(args, work: Path, sci: dict) -> dict:
    """corpus.jsonl + embeddings.npy for SciFact + (n_total - 5,183) derived passages (module doc)."""
    import random

    import numpy as np

    from negforge.synth.data import load_corpus

    out = work / f"synth{args.n_total}"
    meta_path = out / "meta.json"
    if meta_path.is_file():
        return json.loads(meta_path.read_text())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    base = load_corpus(Path(args.scifact) / "corpus.jsonl")
    E = np.load(sci["npy"])
    n_base, dim = E.shape
    n_syn = args.n_total - n_base
    words = [t.split() for t in base.full_texts()]
    vocab = sorted({w for ws in words for w in ws})
    rng, prng = np.random.default_rng(args.seed), random.Random(args.seed)
    src = rng.integers(0, n_base, n_syn)
    emb = np.lib.format.open_memmap(out / "embeddings.npy", mode="w+", dtype=np.float32, shape=(args.n_total, dim))
    emb[:n_base] = E
    seen = set(base.full_texts())
    with open(out / "corpus.jsonl", "w") as f:
        for line in open(Path(args.scifact) / "corpus.jsonl"):
            f.write(line if line.endswith("\n") else line + "\n")
        for start in range(0, n_syn, 100_000):
            js = src[start : start + 100_000]
            x = E[js] + 0.8 * rng.standard_normal((len(js), dim), dtype=np.float32) / np.sqrt(dim)
            emb[n_base + start : n_base + start + len(js)] = x / np.linalg.norm(x, axis=1, keepdims=True)
            for k, j in enumerate(js):
                text = " ".join(prng.choices(words[j], k=24) + prng.choices(vocab, k=6))
                while text in seen:  # sentence-transformers de-duplicates its corpus by text
                    text += " " + prng.choice(vocab)
                seen.add(text)
                f.write(json.dumps({"_id": f"syn{start + k}", "title": "", "text": text}) + "\n")
    emb.flush()
    del emb
    meta = {
        "corpus": str(out / "corpus.jsonl"),
        "npy": str(out / "embeddings.npy"),
        "n": args.n_total,
        "prep_s": round(time.perf_counter() - t0, 1),
    }
    meta_path.write_text(json.dumps(meta))
    return meta


# ---- measured runs (child processes) ---------------------------------------------------------


def _load(spec):
    from negforge.synth.data import load_beir, load_corpus, records_from_beir

    beir = load_beir(spec["scifact"], "train")
    corpus = load_corpus(spec["corpus"]) if spec.get("corpus") else beir.corpus
    return beir, corpus, records_from_beir(beir)


def _dump(spec, negs: dict[str, list[str]]) -> None:
    Path(spec["dump"]).write_text(json.dumps(negs))


def child_negforge(spec) -> dict:
    import faiss  # noqa: F401 - imported before the clock, as the libraries are in the ST child
    import numpy as np
    import torch  # noqa: F401

    from negforge.mixers.mine import mine_records
    from negforge.synth.config import DenseConfig, EncoderConfig, MineConfig
    from negforge.synth.data import Dataset

    beir, corpus, records = _load(spec)
    src = spec["source"]
    cfg = MineConfig(
        sources=[src],
        encoder=EncoderConfig(cache_dir=spec["cache_dir"]),
        dense=DenseConfig(index=spec.get("index", "auto")),
        num_negatives=SETTINGS["num_negatives"],
        range_min=SETTINGS["range_min"],
        range_max=SETTINGS["range_max"],
        relative_margin=SETTINGS["relative_margin"] if src == "dense" else None,
    )
    options = {}
    if src == "dense":
        emb = np.load(spec["npy"], mmap_mode="r")
        options = {"dense": {"embeddings": emb, "query_embeddings": np.load(spec["queries"])}}
    before = current_rss_mb()
    t, c = time.perf_counter(), time.process_time()
    out, report = mine_records(
        records, Dataset(corpus=corpus, qrels=beir.qrels), cfg, show_progress=False, miner_options=options
    )
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    _dump(spec, {r.id: [n.doc_id for n in r.negatives] for r in out})
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_mb": before,
        "mined": report.miners[src].mined,
        "queries": len(out),
    }


def child_st(spec) -> dict:
    import faiss  # noqa: F401 - imported before the clock (use_faiss imports it inside)
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from negforge.synth.models import resolve_encoder

    beir, corpus, records = _load(spec)
    texts = corpus.full_texts()
    pairs = {"anchor": [], "positive": []}
    for r in records:
        for p in r.positives:
            pairs["anchor"].append(r.query)
            pairs["positive"].append(texts[corpus.index(p.doc_id)])
    dataset = Dataset.from_dict(pairs)
    model = SentenceTransformer(resolve_encoder("bundled"), device="cpu")
    # its cache keys (sentence_transformers/util/hard_negatives.py): sha256 of repr((model, prompt,
    # prompt_name, texts)) over the de-duplicated queries and corpus; symlinks to our .npy files
    queries = list(dict.fromkeys(pairs["anchor"]))
    st_corpus = list(dict.fromkeys(texts + pairs["positive"]))
    assert len(st_corpus) == len(texts), "corpus texts must be unique for the shared embeddings"
    first = {}
    for i, r in enumerate(records):
        first.setdefault(r.query, i)
    q = np.load(spec["queries"])[[first[x] for x in queries]]
    cache = Path(spec["cache_dir"])
    cache.mkdir(parents=True, exist_ok=True)
    name = model.model_card_data.base_model or ""
    key = lambda xs: hashlib.sha256(repr((name, None, None, xs)).encode()).hexdigest()  # noqa: E731
    np.save(cache / f"query_embeddings_{key(queries)}.npy", q)
    link = cache / f"corpus_embeddings_{key(st_corpus)}.npy"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(spec["npy"])
    del st_corpus
    before = current_rss_mb()
    t, c = time.perf_counter(), time.process_time()
    ds = mine_hard_negatives(
        dataset,
        model,
        corpus=texts,
        range_min=SETTINGS["range_min"],
        range_max=SETTINGS["range_max"],
        relative_margin=SETTINGS["relative_margin"],
        num_negatives=SETTINGS["num_negatives"],
        sampling_strategy="top",
        output_format="n-tuple",
        use_faiss=spec["faiss"],
        cache_folder=str(cache),
        batch_size=64,
        verbose=False,
    )
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    ids = {t: corpus.ids[i] for i, t in enumerate(texts)}
    by_query = {r.query: r.id for r in records}
    negs: dict[str, list[str]] = {}
    for row in ds:
        negs.setdefault(
            by_query[row["anchor"]], [ids[row[f"negative_{i}"]] for i in range(1, SETTINGS["num_negatives"] + 1)]
        )
    _dump(spec, negs)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_mb": before,
        "mined": len(negs) * SETTINGS["num_negatives"],
        "queries": len(negs),
        "rows": len(ds),
    }


def child_rank_bm25(spec) -> dict:
    import numpy as np
    from rank_bm25 import BM25Okapi

    from negforge.mixers.bm25 import Tokenizer

    beir, corpus, records = _load(spec)
    tok = Tokenizer()
    before = current_rss_mb()
    t = time.perf_counter()
    bm = BM25Okapi([tok(x) for x in corpus.full_texts()], k1=1.5, b=0.75)
    top = [np.argsort(-bm.get_scores(tok(r.query)))[: SETTINGS["range_max"]] for r in records]
    wall = time.perf_counter() - t
    return {"wall_s": wall, "rss_before_mb": before, "mined": 0, "queries": len(top)}


CHILDREN = {"negforge": child_negforge, "st": child_st, "rank_bm25": child_rank_bm25}


def run_child(spec: dict, timeout: int) -> dict:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['label']} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][7:])
    res["process_s"] = time.perf_counter() - t
    return res


# ---- driver -------------------------------------------------------------------------------------


def overlap(a: Path, b: Path) -> float | None:
    if not (a.is_file() and b.is_file()):
        return None
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    common = [q for q in x if q in y and y[q]]
    return round(sum(len(set(x[q]) & set(y[q])) / len(y[q]) for q in common) / max(1, len(common)), 3)


def plan(args, sci: dict, syn: dict | None, work: Path) -> list[dict]:
    runs = []
    for corpus_name, meta in [(f"SciFact {sci['n']:,}", sci), (f"synthetic {args.n_total:,}", syn)]:
        if meta is None:
            continue
        tag = "sci" if meta is sci else "syn"
        base = {
            "scifact": args.scifact,
            "corpus": meta.get("corpus"),
            "npy": meta["npy"],
            "queries": sci["queries"],
            "corpus_name": corpus_name,
        }
        bm25_cache = work / f"bm25-cache-{tag}"
        shutil.rmtree(bm25_cache, ignore_errors=True)
        if not args.skip_bm25:
            runs += [
                {
                    **base,
                    "kind": "negforge",
                    "source": "bm25",
                    "cache_dir": str(bm25_cache),
                    "label": "negforge bm25 (build index)",
                },
                {
                    **base,
                    "kind": "negforge",
                    "source": "bm25",
                    "cache_dir": str(bm25_cache),
                    "label": "negforge bm25 (saved index)",
                },
            ]
            if tag == "sci":
                runs.append({**base, "kind": "rank_bm25", "label": "rank_bm25 (retrieval only, reference)"})
        ivf = Path(f"{meta['npy']}.ivf.faiss")
        ivf.unlink(missing_ok=True)
        runs += [
            {
                **base,
                "kind": "negforge",
                "source": "dense",
                "index": "flat",
                "cache_dir": str(work),
                "label": "negforge dense flat",
                "ref": True,
            },
            {
                **base,
                "kind": "negforge",
                "source": "dense",
                "index": "flat_bf16",
                "cache_dir": str(work),
                "label": "negforge dense flat_bf16 (auto here)",
                "ours": True,
            },
        ]
        if not args.skip_ivf:
            runs += [
                {
                    **base,
                    "kind": "negforge",
                    "source": "dense",
                    "index": "ivf",
                    "cache_dir": str(work),
                    "label": "negforge dense ivf (build index)",
                },
                {
                    **base,
                    "kind": "negforge",
                    "source": "dense",
                    "index": "ivf",
                    "cache_dir": str(work),
                    "label": "negforge dense ivf (saved index)",
                },
            ]
        runs.append(
            {
                **base,
                "kind": "st",
                "faiss": False,
                "cache_dir": str(work / f"st-cache-{tag}"),
                "label": "ST mine_hard_negatives (torch)",
            }
        )
        if not args.skip_st_faiss:
            runs.append(
                {
                    **base,
                    "kind": "st",
                    "faiss": True,
                    "cache_dir": str(work / f"st-cache-{tag}"),
                    "label": "ST mine_hard_negatives (faiss)",
                }
            )
    for i, r in enumerate(runs):
        r["dump"] = str(work / f"negs-{i}.json")
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--scifact", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument(
        "--cache-dir",
        default=str(ROOT / ".cache" / "negforge" / "embeddings"),
        help="negforge's embedding cache (SciFact MiniLM embeddings are read from / written to it)",
    )
    ap.add_argument("--work", default=str(ROOT / ".cache" / "negforge" / "bench-mining"))
    ap.add_argument("--n-total", type=int, default=1_000_000, help="passages in the synthetic corpus (0: skip it)")
    ap.add_argument("--skip-st-faiss", action="store_true")
    ap.add_argument("--skip-bm25", action="store_true", help="dense rows only")
    ap.add_argument("--skip-ivf", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=900, help="per run, seconds")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        logging.basicConfig(level=logging.WARNING)
        res = CHILDREN[spec["kind"]](spec)
        res["peak_rss_mb"] = rss_mb()
        print("RESULT " + json.dumps(res), flush=True)
        return

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sci = prep_scifact(args, work)
    syn = prep_synthetic(args, work, sci) if args.n_total else None
    prep_s = time.perf_counter() - t0
    rows = []
    runs = plan(args, sci, syn, work)
    for spec in runs:
        print(f"-- {spec['corpus_name']}: {spec['label']}", flush=True)
        res = run_child(spec, args.timeout)
        ref = next((r for r in runs if r["corpus_name"] == spec["corpus_name"] and r.get("ref")), None)
        st = next((r for r in runs if r["corpus_name"] == spec["corpus_name"] and r["kind"] == "st"), None)
        rows.append(
            {
                "corpus": spec["corpus_name"],
                "run": spec["label"],
                "queries": res["queries"],
                "negatives": res["mined"],
                "mining_s": round(res["wall_s"], 2),
                "cpu_s": round(res["cpu_s"], 2) if "cpu_s" in res else None,
                "ours": bool(spec.get("ours")),
                "is_st": spec["kind"] == "st",
                "process_s": round(res["process_s"], 1),
                "rss_before_mb": round(res["rss_before_mb"]),
                "peak_rss_mb": round(res["peak_rss_mb"]),
                "dump": spec["dump"],
                "ref": ref and ref["dump"],
                "st": st and st["dump"],
                "dense": spec.get("source") == "dense" or spec["kind"] == "st",
            }
        )
        print(f"   {rows[-1]['mining_s']} s, peak {rows[-1]['peak_rss_mb']} MB", flush=True)
        table = write_results(args, rows, prep_s, syn, done=len(rows) == len(runs))  # partial results survive a cut
    print(table)


def write_results(args, rows: list[dict], prep_s: float, syn: dict | None, done: bool) -> str:
    out_rows = []
    for r in rows:
        r = dict(r)
        if r["dense"]:
            r["overlap_vs_flat"] = overlap(Path(r["dump"]), Path(r["ref"])) if r["ref"] != r["dump"] else 1.0
            r["overlap_vs_st"] = overlap(Path(r["dump"]), Path(r["st"])) if r["st"] else None
        for k in ("dump", "ref", "st", "dense"):
            r.pop(k)
        out_rows.append(r)
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 1),
        },
        "settings": SETTINGS,
        "n_total": args.n_total,
        "prep_s": round(prep_s, 1),
        "synthetic_prep_s": syn and syn.get("prep_s"),
        "complete": done,
        "rows": out_rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mining.json").write_text(json.dumps(result, indent=2) + "\n")
    head = [
        "corpus",
        "run",
        "queries",
        "negatives",
        "mining s",
        "CPU s",
        "RSS before MB",
        "peak RSS MB",
        "overlap vs flat",
        "overlap vs ST",
    ]
    fmt = lambda v: "–" if v is None else str(v)  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in out_rows:
        lines.append(
            "| "
            + " | ".join(
                fmt(v)
                for v in (
                    r["corpus"],
                    r["run"],
                    r["queries"],
                    r["negatives"],
                    r["mining_s"],
                    r.get("cpu_s"),
                    r["rss_before_mb"],
                    r["peak_rss_mb"],
                    r.get("overlap_vs_flat"),
                    r.get("overlap_vs_st"),
                )
            )
            + " |"
        )
    table = "\n".join(lines)
    summary = []
    for corpus in dict.fromkeys(r["corpus"] for r in out_rows):
        ours = next((r for r in out_rows if r["corpus"] == corpus and r["ours"]), None)
        sts = [r for r in out_rows if r["corpus"] == corpus and r["is_st"]]
        if ours and sts:
            fast = min(sts, key=lambda r: r["mining_s"])
            lean = min(sts, key=lambda r: r["peak_rss_mb"])
            summary.append(
                f"- {corpus}: ST's fastest ({fast['run']}) takes {fast['mining_s'] / ours['mining_s']:.1f}x "
                f"the wall time of {ours['run']} ({fast['cpu_s'] / max(ours['cpu_s'], 1e-9):.1f}x the CPU "
                f"time); ours peaks at {ours['peak_rss_mb'] / lean['peak_rss_mb']:.2f} of ST's leanest "
                f"({lean['run']}); overlap with ST {ours.get('overlap_vs_st')}, with exact flat "
                f"{ours.get('overlap_vs_flat')}."
            )
    table += "\n\n" + "\n".join(summary)
    (out / "mining.md").write_text(
        "# Mining benchmark\n\n" + table + f"\n\n{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} "
        f"at the end: other jobs shared the CPU); settings {json.dumps(SETTINGS)}; preparation (not timed above) "
        f"{prep_s:.0f} s.{'' if done else ' INCOMPLETE: the run was cut short.'} "
        "See bench/bench_mining.py for what each row measures.\n\nCommand: `python bench/bench_mining.py "
        + " ".join(sys.argv[1:])
        + "`\n"
    )
    return table


if __name__ == "__main__":
    main()
