"""The multi-positive loss study on NFCorpus: MNRL with one positive vs JointLH, SumMargLH, LSEPair, Rand1LH.

Every arm trains the bundled MiniLM from the same start on the SAME train queries (a seeded sample of
``--queries`` NFCorpus train queries), with the SAME hard negatives (BM25, ranks 0-30 after the labelled
positives are removed, ``--negatives`` per query drawn with the same seed), the same seed, batch size,
lr, warm-up, max_seq_length and number of optimizer steps, and the query-aware batch sampler (no
query meets one of its own positives as an in-batch negative). They differ only in the loss and in how
many positives an example carries: MNRL one (drawn per epoch from the query's positives, seeded), the
multi-positive losses ``--max-positives`` (drawn the same way). Evaluation: the full NFCorpus corpus and
the test qrels (graded nDCG@10, Recall@100), at ``--eval-max-seq-length`` for every arm and the base
model. A paired bootstrap over the test queries gives 95% intervals of each arm's difference to MNRL.

Resumable: each arm's result lives under ``--work``/<arm>/result.json and is reused when its setup is
unchanged (``--force`` redoes it). Writes bench/results/loss_study.json and .md.

    python bench/bench_losses.py                              # defaults below: ~20 min on a 2-core CPU
    python bench/bench_losses.py --arms base mnrl lsepair --queries 64 --steps 4   # a smoke run
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
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_ablation import bootstrap_diff, eval_arm, save_arm, stored_arm, train_summary  # noqa: E402  (the same paired bootstrap as the negatives ablation)

log = logging.getLogger("bench_losses")
ARMS = ("base", "mnrl", "jointlh", "summarglh", "lsepair", "rand1lh")
LABELS = {
    "base": "base model (no training)",
    "mnrl": "MNRL, one positive",
    "jointlh": "JointLH",
    "summarglh": "SumMargLH",
    "lsepair": "LSEPair",
    "rand1lh": "Rand1LH",
}
METRICS = ("ndcg@10", "recall@100", "recall@10", "mrr@10")
SETUP_KEYS = (
    "data",
    "queries",
    "negatives",
    "max_positives",
    "steps",
    "batch_size",
    "lr",
    "train_max_seq_length",
    "seed",
)


def train_records(args):
    from negforge.mixers.mine import mine_records
    from negforge.synth.config import MineConfig
    from negforge.synth.data import load_beir, records_from_beir

    data = load_beir(args.data, "train")
    recs = records_from_beir(data)
    recs = sorted(random.Random(args.seed).sample(recs, min(args.queries, len(recs))), key=lambda r: r.id)
    mined, report = mine_records(
        recs, data, MineConfig(sources=["bm25"], num_negatives=4, range_max=30, seed=args.seed), show_progress=False
    )
    return mined, report


def run_arm(arm: str, records, test, args, work: Path) -> dict:
    from negforge.synth.config import TrainConfig
    from negforge.synth.models import DEFAULT_ENCODER

    res_file = work / arm / "result.json"
    setup = {k: str(getattr(args, k)) for k in ("data", "eval_max_seq_length")}
    if arm != "base":
        setup.update({k: str(getattr(args, k)) for k in SETUP_KEYS})
    old = stored_arm(res_file, setup, args.force)
    if old is not None:
        return old
    out: dict = {"arm": arm, "label": LABELS[arm], "setup": setup}
    encoder = DEFAULT_ENCODER
    if arm != "base":
        from negforge.trainer.train import train_model

        epochs = -(-args.steps * args.batch_size // len(records)) + 1  # enough row blocks for every step
        cfg = TrainConfig(
            loss=arm,
            epochs=epochs,
            max_steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_ratio=0.1,
            scale=20.0,
            max_seq_length=args.train_max_seq_length,
            num_hard_negatives=args.negatives,
            max_positives=1 if arm == "mnrl" else args.max_positives,
            positive_rule="sample",
            batch_sampler="query_aware",
            seed=args.seed,
            logging_steps=1,
            output_dir=str(work / arm / "model"),
        )
        res = train_model(records, cfg, show_progress=False)
        encoder = str(res.model_path)
        out["train"] = train_summary(res)
    ev = eval_arm(encoder, test, args.eval_max_seq_length, METRICS)
    out["eval_s"], out["metrics"] = ev["eval_s"], ev["metrics"]
    out["per_query"] = {m: {q: v[m] for q, v in ev["per_query"].items()} for m in ("ndcg@10", "recall@100")}
    return save_arm(res_file, out)


def _ci(c: dict | None) -> str:
    if not c:
        return "–"
    return f"{c['diff']:+.4f} [{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}]"


def render(results: dict[str, dict], meta: dict) -> str:
    lines = [
        f"# Multi-positive losses on NFCorpus ({meta['test_queries']} test queries, full corpus)",
        "",
        f"Command: `{meta['command']}`; load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']}; {meta['note']}",
        "",
        "| arm | nDCG@10 | Recall@100 | Recall@10 | MRR@10 | Δ nDCG@10 vs MNRL [95% CI] | "
        "Δ Recall@100 vs MNRL [95% CI] | steps | train s | loss first → last |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for r in results.values():
        m, tr = r["metrics"], r.get("train", {})
        loss = f"{tr['loss_first']:.3f} → {tr['loss_last']:.3f}" if tr.get("loss_first") is not None else "–"
        lines.append(
            f"| {r['label']} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | {m['recall@10']:.4f} | "
            f"{m['mrr@10']:.4f} | {_ci(r.get('vs_mnrl_ndcg@10'))} | {_ci(r.get('vs_mnrl_recall@100'))} | "
            f"{tr.get('steps', '–')} | {tr.get('wall_s', '–')} | {loss} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "nfcorpus"))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--queries", type=int, default=480, help="train queries (seeded sample)")
    ap.add_argument("--negatives", type=int, default=1, help="BM25 hard negatives per example")
    ap.add_argument("--max-positives", type=int, default=3, help="positives per example, multi-positive arms")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--train-max-seq-length", type=int, default=128)
    ap.add_argument("--eval-max-seq-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_losses")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loss_study")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from negforge.synth.data import load_beir

    meta = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "loadavg_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    t0 = time.perf_counter()
    records, mine_report = train_records(args)
    test = load_beir(args.data, "test")
    results = {arm: run_arm(arm, records, test, args, args.work) for arm in args.arms}
    for arm, r in results.items():
        if arm not in ("base", "mnrl") and "mnrl" in results:
            for m in ("ndcg@10", "recall@100"):
                r[f"vs_mnrl_{m}"] = bootstrap_diff(
                    r["per_query"][m], results["mnrl"]["per_query"][m], args.bootstrap, args.seed
                )
    meta.update(
        {
            "loadavg_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "wall_s": round(time.perf_counter() - t0, 1),
            "test_queries": len(next(iter(results.values()))["per_query"]["ndcg@10"]),
            "train_positives_median": sorted(len(r.positives) for r in records)[len(records) // 2],
            "args": {k: str(v) for k, v in vars(args).items()},
            "note": (
                f"{len(records)} train queries (median {sorted(len(r.positives) for r in records)[len(records) // 2]}"
                f" positives), {args.steps} steps of batch {args.batch_size}, lr {args.lr}, "
                f"{args.negatives} BM25 negative(s), max_seq_length {args.train_max_seq_length} "
                f"(train) / {args.eval_max_seq_length} (eval), seed {args.seed}; multi-positive arms "
                f"carry {args.max_positives} positives; Δ: paired bootstrap ({args.bootstrap}) over test "
                "queries."
            ),
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    slim = {a: {k: v for k, v in r.items() if k != "per_query"} for a, r in results.items()}
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {"meta": meta, "mine": mine_report.to_dict() if hasattr(mine_report, "to_dict") else None, "results": slim},
            indent=2,
        )
        + "\n"
    )
    md = render(results, meta)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
