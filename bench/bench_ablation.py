"""Ablation on SciFact: which negatives help? base model vs fine-tuned with in-batch negatives only,
+ BM25, + dense, + LLM and hybrid (LLM + BM25 + dense per query) hard negatives.

Input: verified records (``runs/ablation/verified.jsonl`` if it exists, else ``runs/default/verified.jsonl``).
Every trained arm uses the SAME queries: those with at least one kept negative from each of llm, bm25
and dense (the hybrid arm needs all three), so arms differ only in which negatives they see. Each arm
gets ``--negatives`` hard negatives per query: the first kept ones of its source (miner rank order,
generation order for llm; fewer than k are repeated in turn, as ``build_columns`` does and counts);
hybrid takes the sources in turn (llm, bm25, dense, llm, ...), so k=3 is one of each. "in-batch" trains
on the same rows without a hard-negative column. Same seed, loss (MNRL, scale 20), batch size, lr,
warm-up, epochs and max_seq_length for every arm; rows of one query never share a batch.

Evaluation: the full corpus and the test qrels (nDCG@10, Recall@100, MRR@10 and Recall@10 with
pytrec_eval, exact inner product), at ``--eval-max-seq-length`` for every arm including the base
model. A paired bootstrap over test queries (``--bootstrap`` resamples) gives a 95% interval of each
arm's nDCG@10 difference to the in-batch arm and to the base model.

Resumable: each arm's model and result live under ``--work`` (``<arm>/result.json``); a rerun skips
finished arms (``--force`` redoes them). Writes bench/results/ablation.json and ablation.md.

    python bench/bench_ablation.py                          # all arms (~50 min on an idle 2-core machine)
    python bench/bench_ablation.py --arms base inbatch bm25 --limit-queries 50 --data tests/... # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from negforge.synth.schema import Record, Source, Status  # noqa: E402  (light imports only)

log = logging.getLogger("bench_ablation")
ARMS = ("base", "inbatch", "bm25", "dense", "llm", "hybrid")
SOURCES = ("llm", "bm25", "dense")
LABELS = {
    "base": "base model (no training)",
    "inbatch": "in-batch negatives only",
    "bm25": "+ BM25 negatives",
    "dense": "+ dense negatives",
    "llm": "+ LLM negatives",
    "hybrid": "hybrid (LLM + BM25 + dense)",
}


def default_records() -> Path:
    for p in (ROOT / "runs/ablation/verified.jsonl", ROOT / "runs/default/verified.jsonl"):
        if p.is_file():
            return p
    return ROOT / "runs/default/verified.jsonl"


def kept(r: Record, source: str) -> list:
    return [
        n
        for n in r.negatives
        if n.source == Source(source) and n.verdict is not None and n.verdict.status == Status.kept
    ]


def common_queries(records: list[Record], fill: bool) -> tuple[list[Record], dict[str, int]]:
    """The records to train every arm on, and counts: with ``fill``, all that have a kept negative of
    some source; without, those that have one of every source."""
    counts = {"records": len(records)}
    for s in SOURCES:
        counts[f"with_kept_{s}"] = sum(1 for r in records if kept(r, s))
    test = any if fill else all
    out = [r for r in records if test(kept(r, s) for s in SOURCES)]
    counts["used"] = len(out)
    return out, counts


def random_negative(r: Record, corpus, seed: int):
    """A corpus document that is not a positive of ``r``, drawn with a (seed, record id) RNG."""
    from negforge.synth.schema import Negative, Provenance

    rng, pos = random.Random(f"{seed}:{r.id}:fill"), r.positive_ids()
    while True:
        doc = corpus.passage(corpus.ids[rng.randrange(len(corpus))])
        if doc.doc_id not in pos:
            return Negative(**doc.model_dump(), source=Source.random, provenance=Provenance(seed=seed))


def arm_records(records: list[Record], arm: str, k: int, seed: int, corpus=None) -> list[Record]:
    """Each record with exactly the negatives ``arm`` trains on (none for inbatch). With ``corpus``
    (fill mode), a record without a negative of the arm's source gets one random corpus document."""
    out = []
    for r in records:
        if arm == "inbatch":
            negs = []
        elif arm == "hybrid":
            pools = {s: kept(r, s) for s in SOURCES}
            negs, i = [], 0
            while len(negs) < k and any(pools.values()):
                s = SOURCES[i % len(SOURCES)]
                if pools[s]:
                    negs.append(pools[s].pop(0))
                i += 1
        else:
            negs = kept(r, arm)[:k]
        if arm != "inbatch" and not negs and corpus is not None:
            negs = [random_negative(r, corpus, seed)]
        out.append(r.model_copy(update={"negatives": negs}))
    return out


def sample_corpus(data, size: int, seed: int):
    """``data`` with its corpus cut to every document relevant to its qrels plus random others up to
    ``size`` (seeded): a cheaper, easier evaluation (metrics are higher than on the full corpus)."""
    from negforge.synth.data import Corpus, Dataset

    keep = {d for rels in data.qrels.values() for d, s in rels.items() if s > 0 and d in data.corpus}
    others = [d for d in data.corpus.ids if d not in keep]
    random.Random(seed).shuffle(others)
    keep.update(others[: max(0, size - len(keep))])
    rows = [i for i, d in enumerate(data.corpus.ids) if d in keep]
    c = data.corpus
    return Dataset(
        corpus=Corpus(
            ids=[c.ids[i] for i in rows], titles=[c.titles[i] for i in rows], texts=[c.texts[i] for i in rows]
        ),
        queries=data.queries,
        qrels=data.qrels,
    )


def mine_own(n: int, args, llm_from: Path | None) -> tuple[list[Record], str]:
    """Stand-in input when the pipeline's verified records are not there: the first ``n`` train queries
    with 8 BM25 + 8 dense negatives each (ranks 0-50, labelled positives excluded by the miner; marked
    kept without the embedding verifier) plus the kept LLM negatives of ``llm_from`` for the same queries."""
    from negforge.mixers.mine import mine_records
    from negforge.synth.config import MineConfig
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.synth.io import read_records
    from negforge.synth.schema import Verdict

    data = load_beir(args.data, "train")
    recs = records_from_beir(data, n)
    sources = ["bm25"] + (["dense"] if {"dense", "hybrid"} & set(args.arms) else [])
    cfg = MineConfig(sources=sources, num_negatives=8, cache_dir=str(ROOT / ".cache/negforge/embeddings"))
    recs, report = mine_records(recs, data, cfg, show_progress=False)
    log.info("mined: %s", report.to_dict())
    llm = {}
    if llm_from is not None and llm_from.is_file():
        llm = {r.id: kept(r, "llm") for r in read_records(llm_from)}
    v = Verdict(status=Status.kept, rule="miner", reason="labelled positives excluded by the miner")
    out = [
        r.model_copy(
            update={"negatives": [n.model_copy(update={"verdict": v}) for n in r.negatives] + llm.get(r.id, [])}
        )
        for r in recs
    ]
    desc = (
        f"mined here (first {n} train queries: BM25 (+ dense when those arms run) top 8 in ranks 0-50; "
        f"LLM negatives from {llm_from if llm else 'nowhere'})"
    )
    return out, desc


def bootstrap_diff(a: dict[str, float], b: dict[str, float], n: int, seed: int) -> dict[str, float]:
    """Mean of a - b over the shared queries and a paired bootstrap 95% interval."""
    import numpy as np

    qs = sorted(set(a) & set(b))
    d = np.array([a[q] - b[q] for q in qs])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "diff": float(d.mean()),
        "ci95_low": float(lo),
        "ci95_high": float(hi),
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
        "ties": int((d == 0).sum()),
    }


def train_summary(res) -> dict:
    """What every ablation arm records about its training (a TrainResult)."""
    return {
        "steps": res.steps,
        "epochs": res.epochs,
        "examples": res.examples,
        "wall_s": res.wall_s,
        "samples_per_s": res.samples_per_s,
        "columns": res.columns,
        "loss_first": res.losses[0]["loss"] if res.losses else None,
        "loss_last": res.losses[-1]["loss"] if res.losses else None,
    }


def eval_arm(
    encoder: str, data, max_seq_length: int, metrics=("ndcg@10", "recall@10", "recall@100", "mrr@10"), ecfg=None
) -> dict:
    """Per-query and mean metrics of ``encoder`` on ``data`` (the shared embedding cache), with its time.
    ``ecfg``: an EvalConfig to evaluate with instead (e.g. a run's eval section); ``max_seq_length`` is then unused."""
    from negforge.synth.config import EvalConfig
    from negforge.trainer.evaluate import per_query_metrics, retrieve

    ecfg = ecfg or EvalConfig(
        encoder=encoder,
        max_seq_length=max_seq_length,
        batch_size=64,
        cache_dir=str(ROOT / ".cache/negforge/embeddings"),
    )
    t = time.perf_counter()
    per_q = per_query_metrics(data.need_qrels("eval"), retrieve(encoder, data, ecfg, show_progress=False))
    return {
        "eval_s": round(time.perf_counter() - t, 1),
        "metrics": {m: sum(v[m] for v in per_q.values()) / len(per_q) for m in metrics},
        "per_query": per_q,
    }


def stored_arm(res_file: Path, setup: dict, force: bool) -> dict | None:
    """An arm's stored result when it was made with ``setup`` (and not ``force``), else None."""
    if res_file.is_file() and not force:
        old = json.loads(res_file.read_text())
        if old.get("setup") == setup:
            log.info("%s: reusing %s", res_file.parent.name, res_file)
            return old
        log.info("%s: %s was made with other settings; redoing it", res_file.parent.name, res_file)
    return None


def save_arm(res_file: Path, out: dict) -> dict:
    """Write an arm's result (``out`` with ``metrics`` and ``eval_s``) and return it."""
    res_file.parent.mkdir(parents=True, exist_ok=True)
    res_file.write_text(json.dumps(out, indent=1) + "\n")
    log.info("%s: %s (eval %.0f s)", res_file.parent.name, out["metrics"], out["eval_s"])
    return out


def run_arm(arm: str, records: list[Record], data, args, work: Path) -> dict:
    from negforge.synth.config import TrainConfig
    from negforge.synth.models import DEFAULT_ENCODER

    res_file = work / arm / "result.json"
    keys = ("data", "split", "eval_max_seq_length", "eval_corpus") + (
        ()
        if arm == "base"
        else (
            "records",
            "fill",
            "mine_queries",
            "negatives",
            "limit_queries",
            "epochs",
            "batch_size",
            "lr",
            "train_max_seq_length",
            "seed",
        )
    )
    setup = {k: getattr(args, k) for k in keys}
    old = stored_arm(res_file, setup, args.force)
    if old is not None:
        return old
    out: dict = {"arm": arm, "label": LABELS[arm], "setup": setup}
    encoder = DEFAULT_ENCODER
    if arm != "base":
        from negforge.trainer.train import train_model

        k = 0 if arm == "inbatch" else args.negatives
        cfg = TrainConfig(
            loss="mnrl",
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_ratio=0.1,
            scale=20.0,
            max_seq_length=args.train_max_seq_length,
            num_hard_negatives=k,
            max_positives=4,
            seed=args.seed,
            logging_steps=1,
            output_dir=str(work / arm / "model"),
        )
        recs = arm_records(records, arm, args.negatives, args.seed, data.corpus if args.fill else None)
        out["filled_random"] = sum(1 for r in recs if r.negatives and r.negatives[0].source == Source.random)
        res = train_model(recs, cfg, show_progress=False)
        encoder = str(res.model_path)
        out["train"] = train_summary(res)
    ev = eval_arm(encoder, data, args.eval_max_seq_length)
    out["eval_s"], out["metrics"] = ev["eval_s"], ev["metrics"]
    out["per_query_ndcg@10"] = {q: v["ndcg@10"] for q, v in ev["per_query"].items()}
    return save_arm(res_file, out)


def render(results: dict[str, dict], meta: dict) -> str:
    lines = [
        "| arm | nDCG@10 | Recall@100 | MRR@10 | Recall@10 | Δ nDCG@10 vs in-batch [95% CI] | "
        "Δ nDCG@10 vs base [95% CI] | steps | train loss first → last |",
        "|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for arm, r in results.items():
        m, tr = r["metrics"], r.get("train", {})
        cis = []
        for ref in ("inbatch", "base"):
            c = r.get(f"vs_{ref}")
            cis.append(f"{c['diff']:+.4f} [{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}]" if c else "–")
        loss = f"{tr['loss_first']:.3f} → {tr['loss_last']:.3f}" if tr.get("loss_first") is not None else "–"
        lines.append(
            f"| {LABELS[arm]} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | {m['mrr@10']:.4f} | "
            f"{m['recall@10']:.4f} | {cis[0]} | {cis[1]} | {tr.get('steps', 0)} | {loss} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--records", default=None, help="verified records JSONL (default: runs/ablation, else runs/default)"
    )
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--negatives", type=int, default=3, help="hard negatives per query (hybrid: sources in turn)")
    ap.add_argument(
        "--fill",
        action="store_true",
        help="train on every query with some kept negative; an arm "
        "whose source a query lacks gives it one random corpus document instead (default: only "
        "queries with a kept llm, bm25 and dense negative)",
    )
    ap.add_argument(
        "--mine-queries",
        type=int,
        default=None,
        help="no verified records: mine BM25 + dense "
        "negatives here for the first N train queries (LLM negatives from --records if it exists)",
    )
    ap.add_argument("--limit-queries", type=int, default=None, help="train on the first N common queries only")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--train-max-seq-length", type=int, default=128)
    ap.add_argument("--eval-max-seq-length", type=int, default=256)
    ap.add_argument(
        "--eval-corpus",
        type=int,
        default=None,
        help="evaluate on the relevant documents + random others up to N (default: the full corpus)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--work", default=str(ROOT / "runs/ablation_bench"))
    ap.add_argument("--out", default=str(ROOT / "bench/results"))
    ap.add_argument("--force", action="store_true", help="redo arms that already have a result")
    args = ap.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )

    from negforge.synth.data import load_beir
    from negforge.synth.io import read_records

    rec_path = Path(args.records) if args.records else default_records()
    args.records = str(rec_path)
    trained = [a for a in args.arms if a != "base"]
    if args.mine_queries and trained:
        mined, desc = mine_own(args.mine_queries, args, rec_path)
        args.records = desc
        records, counts = common_queries(mined, args.fill)
    else:
        records, counts = (
            common_queries(read_records(rec_path), args.fill) if trained else ([], {"records": 0, "used": 0})
        )
    if args.limit_queries:
        records = records[: args.limit_queries]
        counts["used"] = len(records)
    if not records and trained:
        raise SystemExit(f"{rec_path}: no record has a kept negative from each of {', '.join(SOURCES)}: {counts}")
    data = load_beir(args.data, args.split)
    if args.eval_corpus:
        data = sample_corpus(data, args.eval_corpus, args.seed)
    test_ids = set(data.qrels)
    assert not test_ids & {r.id for r in records}, "training queries overlap the evaluation qrels"
    work = Path(args.work)
    # Arms must differ only in negatives: the same rows (query, positive) for each trained arm.
    t0 = time.perf_counter()
    results = {}
    for arm in args.arms:
        t = time.perf_counter()
        results[arm] = run_arm(arm, records, data, args, work)
        log.info("%s done in %.0f s", arm, time.perf_counter() - t)
    rows = {a: r["train"]["examples"] for a, r in results.items() if "train" in r}
    if len(set(rows.values())) > 1:
        raise SystemExit(f"arms trained on different row counts: {rows}")
    for arm, r in results.items():
        for ref in ("inbatch", "base"):
            if ref in results and ref != arm:
                r[f"vs_{ref}"] = bootstrap_diff(
                    r["per_query_ndcg@10"], results[ref]["per_query_ndcg@10"], args.bootstrap, args.seed
                )
    meta = {
        "records": args.records,
        "queries": counts,
        "args": {k: v for k, v in vars(args).items()},
        "test_queries": len(next(iter(results.values()))["per_query_ndcg@10"]) if results else 0,
        "wall_s_this_invocation": round(time.perf_counter() - t0, 1),
        "loadavg": os.getloadavg(),
    }
    cmd = "python bench/bench_ablation.py " + " ".join(sys.argv[1:])
    table = render(results, meta)
    cols = next((r["train"]["columns"] for r in results.values() if r["arm"] == "hybrid" and "train" in r), None)
    text = "\n".join(
        [
            "# Ablation: which hard negatives help (SciFact, MiniLM-L6, MNRL)",
            "",
            f"Records: `{meta['records']}`; training queries = "
            + (
                "those with any kept negative; an arm whose source a query lacks gives it one random corpus document "
                "(filled per arm: "
                + ", ".join(f"{a} {r['filled_random']}" for a, r in results.items() if "filled_random" in r)
                + "): "
                if args.fill
                else "those with a kept llm, bm25 and dense negative: "
            )
            + f"{counts['used']} of {counts['records']} (kept llm: {counts.get('with_kept_llm')}, bm25: "
            f"{counts.get('with_kept_bm25')}, dense: {counts.get('with_kept_dense')}). Every trained arm: same queries "
            f"and rows, MNRL scale 20, {args.epochs} epoch, batch {args.batch_size}, lr {args.lr}, warm-up 0.1, seed "
            f"{args.seed}, train max_seq_length {args.train_max_seq_length}, {args.negatives} hard negatives per query "
            "(in-batch: none). Evaluation: "
            + (
                f"SAMPLED corpus ({len(data.corpus)} docs: every test-relevant one + random others; easier than the "
                "full corpus), "
                if args.eval_corpus
                else "full corpus, "
            )
            + f"{args.split} qrels ({meta['test_queries']} queries), max_seq_length {args.eval_max_seq_length}. "
            f"Δ: paired bootstrap ({args.bootstrap} resamples) over test queries.",
            "",
            table,
            "",
            f"Hybrid arm columns: {cols}" if cols else "",
            "",
            f"Command: `{cmd}`",
            "",
        ]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text(text)
    slim = {a: {k: v for k, v in r.items() if k != "per_query_ndcg@10"} for a, r in results.items()}
    (out / "ablation.json").write_text(json.dumps({"meta": meta, "arms": slim}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
