"""Negatives that do not go stale: `negforge run` with the dense negatives re-mined by the model being
trained (refresh_every_epochs, as ANCE) against the fixed pool mined by the base model, on SciFact.

Both arms are the real pipeline (:func:`negforge.synth.pipeline.run_pipeline`) on the same data: a seeded
sample of ``--queries`` train queries (the full corpus; the folder is a slice with only train qrels cut),
no LLM stage (``llm_queries 0``), BM25 + dense mining, the qrels + embedding verifiers, ``--epochs`` mix
draws of ``--k`` negatives (half BM25, half dense) and one training epoch per draw, each continuing from
the last; same seed, batch size, lr and so the same number of steps. ``refresh`` re-mines the dense
negatives with the model of epoch N after every ``--refresh-every`` epochs (then verify, mix);
``fixed`` keeps the base model's pool. Evaluation: the full corpus and the test qrels (nDCG@10,
Recall@100) with the existing eval; a paired bootstrap over the test queries gives 95% intervals of
refresh - fixed (and each - base).

Resumable per arm (``--work``/<arm>/result.json, reused while its setup is unchanged; the run folder's own
stamps reuse its stages), so each arm can be its own short job. Writes bench/results/refresh.json and .md.

    python bench/bench_refresh.py --arms base fixed      # then --arms refresh, then all arms for the tables
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

from bench_ablation import bootstrap_diff, eval_arm, save_arm, stored_arm  # noqa: E402  (shared by the ablations)
from bench_losses import _ci  # noqa: E402
from bench_memory_bank import PAIRED, loadavg  # noqa: E402

log = logging.getLogger("bench_refresh")
ARMS = ("base", "fixed", "refresh")
LABELS = {
    "base": "base model (no training)",
    "fixed": "fixed pool (mined by the base model)",
    "refresh": "refreshed dense negatives (re-mined by the trained model)",
}
SETUP_KEYS = (
    "data",
    "queries",
    "epochs",
    "refresh_every",
    "k",
    "negatives",
    "batch_size",
    "lr",
    "train_max_seq_length",
    "seed",
)


def train_slice(src: Path, dst: Path, n: int, seed: int) -> Path:
    """A BEIR folder: ``src``'s corpus, queries and test qrels (links), train qrels of ``n`` seeded queries."""
    rows = (src / "qrels" / "train.tsv").read_text().splitlines()
    header, body = rows[0], [r for r in rows[1:] if r.strip()]
    qids = sorted({r.split("\t")[0] for r in body})
    keep = set(random.Random(seed).sample(qids, min(n, len(qids))))
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        link = dst / name
        if not link.exists():
            link.symlink_to((src / name).resolve())
    text = "\n".join([header, *(r for r in body if r.split("\t")[0] in keep)]) + "\n"
    target = dst / "qrels" / "train.tsv"
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
    return dst


def run_config(arm: str, data: Path, args):
    from negforge.synth.config import RunConfig

    enc = {"cache_dir": args.cache}  # the run's encoder otherwise (openvino, max_seq_length 256)
    return RunConfig.model_validate(
        {
            "data": str(data),
            "out_dir": str(args.work / arm / "run"),
            "llm_queries": 0,
            "refresh_every_epochs": args.refresh_every if arm == "refresh" else None,
            "shortcut_check": False,
            "report": False,
            "encoder": enc,
            "mine": {"sources": ["bm25", "dense"], "num_negatives": 8, "seed": args.seed},
            "mix": {"k": args.k, "epochs": args.epochs, "ratios": {"bm25": 0.5, "dense": 0.5}, "seed": args.seed},
            "train": {
                "batch_size": args.batch_size,
                "lr": args.lr,
                "warmup_ratio": 0.1,
                "max_seq_length": args.train_max_seq_length,
                "num_hard_negatives": args.negatives,
                "seed": args.seed,
            },
        }
    )


def run_arm(arm: str, data: Path, test, args) -> dict:
    setup = {k: str(getattr(args, k)) for k in ("data",)}
    if arm != "base":
        setup.update({k: str(getattr(args, k)) for k in SETUP_KEYS})
    res_file = args.work / arm / "result.json"
    old = stored_arm(res_file, setup, args.force)
    if old is not None:
        return old
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    out: dict = {"arm": arm, "label": LABELS[arm], "setup": setup, "command": cmd, "loadavg": loadavg()}
    encoder = "bundled:all-MiniLM-L6-v2"
    if arm != "base":
        from negforge.synth.pipeline import run_pipeline

        t = time.perf_counter()
        res = run_pipeline(run_config(arm, data, args), show_progress=False)
        encoder = str(res.model_path)
        train = res.summaries["train"]
        out["run"] = {
            "wall_s": round(time.perf_counter() - t, 1),
            "timings_s": res.timings,
            "steps": sum(t["steps"] for t in train),
            "steps_per_epoch": [t["steps"] for t in train],
            "examples_per_epoch": [t["examples"] for t in train],
            "loss_first_last": [[t["losses"][0]["loss"], t["losses"][-1]["loss"]] for t in train if t["losses"]],
            "refresh": res.summaries.get("refresh", []),
            "metrics_after": res.metrics_after,
        }
    ev = eval_arm(encoder, test, 0, ecfg=run_config(arm, data, args).eval)  # the run's eval (its cache)
    out["eval_s"], out["metrics"] = ev["eval_s"], ev["metrics"]
    out["per_query"] = {m: {q: v[m] for q, v in ev["per_query"].items()} for m in PAIRED}
    out["loadavg"] += " -> " + loadavg()
    return save_arm(res_file, out)


def render(results: dict[str, dict], meta: dict) -> str:
    lines = [
        f"# Fresh vs fixed negatives on {meta['data']} ({meta['test_queries']} test queries, full corpus)",
        "",
        f"Command(s): {meta['commands']}; {meta['note']}",
        "",
        "| arm | nDCG@10 | Recall@100 | Δ nDCG@10 vs fixed [95% CI] | Δ Recall@100 vs fixed [95% CI] | "
        "Δ nDCG@10 vs base [95% CI] | steps | run s |",
        "|---|---:|---:|---|---|---|---:|---:|",
    ]
    for r in results.values():
        m, run = r["metrics"], r.get("run", {})
        lines.append(
            f"| {r['label']} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | {_ci(r.get('vs_fixed_ndcg@10'))} | "
            f"{_ci(r.get('vs_fixed_recall@100'))} | {_ci(r.get('vs_base_ndcg@10'))} | {run.get('steps', '–')} | "
            f"{run.get('wall_s', '–')} |"
        )
    for rep in results.get("refresh", {}).get("run", {}).get("refresh", []):
        lines += [
            "",
            f"Refresh after epoch {rep['after_epoch']} (model `{Path(rep['model']).name}`, sha256 "
            f"{rep['model_sha256']}): {rep['records']} queries, dense negatives {rep['dense_before']} → "
            f"{rep['dense_after']}, {rep['same_doc_as_before']} of them documents already in the old pool, "
            f"{rep['records_changed']} queries with a changed set; kept by the verifier {rep['kept_before']} → "
            f"{rep['kept_after']} ({rep['rejected_after']} rejected).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--queries", type=int, default=300, help="train queries (seeded sample)")
    ap.add_argument("--epochs", type=int, default=2, help="mix.epochs: one training epoch per draw")
    ap.add_argument("--refresh-every", type=int, default=1)
    ap.add_argument("--k", type=int, default=2, help="mix.k: negatives per query and epoch (half BM25, half dense)")
    ap.add_argument("--negatives", type=int, default=2, help="train.num_hard_negatives")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--train-max-seq-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_refresh")
    ap.add_argument("--cache", default=str(ROOT / ".cache/negforge/embeddings"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "refresh")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from negforge.synth.data import load_beir

    t0 = time.perf_counter()
    data = train_slice(args.data, args.work / "data", args.queries, args.seed)
    test = load_beir(data, "test")
    results = {arm: run_arm(arm, data, test, args) for arm in args.arms}
    for arm, r in results.items():
        for ref in ("fixed", "base"):
            if ref in results and arm not in (ref, "base"):
                for m in PAIRED:
                    r[f"vs_{ref}_{m}"] = bootstrap_diff(
                        r["per_query"][m], results[ref]["per_query"][m], args.bootstrap, 0
                    )
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    meta = {
        "data": args.data.name,
        "commands": f"`{cmd}` (load {loadavg()})"
        + "".join(
            f"; arm {a} made by `{r['command']}` (load {r['loadavg']})"
            for a, r in results.items()
            if r.get("command") and r["command"] != cmd
        ),
        "wall_s_this_invocation": round(time.perf_counter() - t0, 1),
        "test_queries": len(next(iter(results.values()))["per_query"]["ndcg@10"]),
        "args": {k: str(v) for k, v in vars(args).items()},
        "note": (
            f"{args.queries} train queries (seeded), no LLM stage, {args.epochs} epochs (one mix draw of k={args.k}, "
            f"half BM25 half dense, per epoch; {args.negatives} hard negatives per example), batch {args.batch_size}, "
            f"lr {args.lr}, warm-up 0.1 per epoch, train max_seq_length {args.train_max_seq_length}; mining, verification and eval with the run's encoder settings (openvino, precision auto, max_seq_length 256), "
            f"seed {args.seed}; refresh: dense re-mined after every {args.refresh_every} epoch(s); Δ: paired "
            f"bootstrap ({args.bootstrap} resamples) over test queries. 2 CPUs shared with other jobs."
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    slim = {a: {k: v for k, v in r.items() if k != "per_query"} for a, r in results.items()}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": slim}, indent=2) + "\n")
    md = render(results, meta)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
