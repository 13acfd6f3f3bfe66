"""Many negatives on small memory: effective batch size x memory-bank size on SciFact (loss mnrl_xbm).

Every arm trains the bundled MiniLM from the same start on the SAME train queries (a seeded sample of
``--queries`` SciFact train queries) with the SAME BM25 hard negatives (bench_losses.train_records), the
same seed, lr, warm-up, max_seq_length, query-aware batches and number of optimizer steps. They differ in
the batch size and in the memory bank: ``b16_q0`` is plain MNRL at batch 16 (the bank code with an empty
bank), ``b16_q64`` / ``b16_q256`` add the last 64 / 256 passage embeddings of earlier steps as negatives
(XBM: the trained model's own, detached), ``b16_q256_m`` has a momentum encoder (``--momentum``) embed them
(MoCo), ``b32_q0`` doubles the batch without a bank (twice the examples per step, twice the compute).
Bank entries that are a positive of the query are left out (counted). Evaluation: the full SciFact corpus
and the test qrels (nDCG@10, Recall@100) with the existing eval; a paired bootstrap over the test queries
gives 95% intervals of each arm's difference to ``b16_q0``.

Resumable per arm (``--work``/<arm>/result.json, reused while its setup is unchanged), so each arm can be
its own short job; the last invocation writes bench/results/memory_bank.json and .md.

    python bench/bench_memory_bank.py --arms base b16_q0        # then the other arms, one or two at a time
    python bench/bench_memory_bank.py                           # all arms (reusing finished ones) + the tables
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_ablation import bootstrap_diff, eval_arm, save_arm, stored_arm, train_summary  # noqa: E402  (shared by the ablations)
from bench_losses import _ci, train_records  # noqa: E402  (CI cell; seeded query sample + BM25 negatives)

log = logging.getLogger("bench_memory_bank")
ARMS = {  # name: (batch size, queue size, momentum?)
    "base": (0, 0, False),
    "b16_q0": (16, 0, False),
    "b16_q64": (16, 64, False),
    "b16_q256": (16, 256, False),
    "b16_q256_m": (16, 256, True),
    "b32_q0": (32, 0, False),
}
REF = "b16_q0"
PAIRED = ("ndcg@10", "recall@100")
SETUP_KEYS = ("data", "queries", "negatives", "steps", "lr", "train_max_seq_length", "seed")


def label(arm: str, momentum: float) -> str:
    if arm == "base":
        return "base model (no training)"
    batch, queue, mom = ARMS[arm]
    bank = f"bank {queue}" + (f", momentum {momentum}" if mom else "") if queue else "no bank"
    return f"batch {batch}, {bank}"


def train_config(arm: str, n_records: int, args):
    from negforge.synth.config import TrainConfig

    batch, queue, mom = ARMS[arm]
    return TrainConfig(
        loss="mnrl_xbm",
        queue_size=queue,
        momentum=args.momentum if mom else 0.0,
        epochs=-(-args.steps * batch // n_records) + 1,  # enough epochs for every step
        max_steps=args.steps,
        batch_size=batch,
        lr=args.lr,
        warmup_ratio=0.1,
        scale=20.0,
        max_seq_length=args.train_max_seq_length,
        num_hard_negatives=args.negatives,
        batch_sampler="query_aware",
        seed=args.seed,
        logging_steps=1,
    )


def eval_config(args):
    """The eval: full corpus, the given runtime (openvino, precision auto: as a run evaluates; or torch fp32)."""
    from negforge.synth.config import EvalConfig

    precision = "auto" if args.eval_backend == "openvino" else "fp32"
    enc = {"max_seq_length": args.eval_max_seq_length, "backend": args.eval_backend, "precision": precision}
    return EvalConfig(encoder={**enc, "batch_size": 64, "cache_dir": str(ROOT / ".cache/negforge/embeddings")})


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_arm(arm: str, records, test, args) -> dict:
    """Train (not the base arm) and evaluate one arm; its result.json is reused while its setup is unchanged."""
    setup = {k: str(getattr(args, k)) for k in ("data", "eval_max_seq_length", "eval_backend")}
    if arm != "base":
        setup.update({k: str(getattr(args, k)) for k in SETUP_KEYS}, arm=str(ARMS[arm]))
        setup.update({"momentum": str(args.momentum)} if ARMS[arm][2] else {})
    res_file = args.work / arm / "result.json"
    old = stored_arm(res_file, setup, args.force)
    if old is not None:
        return old
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    out: dict = {"arm": arm, "label": label(arm, args.momentum), "setup": setup, "command": cmd, "loadavg": loadavg()}
    encoder = "bundled:all-MiniLM-L6-v2"
    if arm != "base":
        from negforge.trainer.train import train_model

        cfg = train_config(arm, len(records), args).model_copy(update={"output_dir": str(args.work / arm / "model")})
        res = train_model(records, cfg, show_progress=False)
        encoder = str(res.model_path)
        out["train"] = {**train_summary(res), "memory_bank": res.memory_bank}
    ev = eval_arm(encoder, test, args.eval_max_seq_length, ecfg=eval_config(args))
    out["eval_s"], out["metrics"] = ev["eval_s"], ev["metrics"]
    out["per_query"] = {m: {q: v[m] for q, v in ev["per_query"].items()} for m in PAIRED}
    out["loadavg"] += " -> " + loadavg()
    return save_arm(res_file, out)


def render(results: dict[str, dict], meta: dict) -> str:
    lines = [
        f"# Memory bank: batch size x queue size on {meta['data']} ({meta['test_queries']} test queries, full corpus)",
        "",
        f"Command(s): {meta['commands']}; load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']} (2 CPUs shared with other jobs); {meta['note']}",
        "",
        "| arm | nDCG@10 | Recall@100 | Δ nDCG@10 vs batch 16 [95% CI] | Δ Recall@100 vs batch 16 [95% CI] | "
        "bank filled | bank negatives / query | positives left out | steps | train s | loss first → last |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results.values():
        m, tr = r["metrics"], r.get("train", {})
        mb = tr.get("memory_bank") or {}
        loss = f"{tr['loss_first']:.3f} → {tr['loss_last']:.3f}" if tr.get("loss_first") is not None else "–"
        lines.append(
            f"| {r['label']} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | {_ci(r.get('vs_ref_ndcg@10'))} | "
            f"{_ci(r.get('vs_ref_recall@100'))} | {mb.get('filled', '–') if mb.get('queue_size') else '–'} | "
            f"{mb.get('mean_bank_negatives_per_query', '–') if mb.get('queue_size') else '–'} | "
            f"{mb.get('excluded_false_negatives', '–') if mb.get('queue_size') else '–'} | "
            f"{tr.get('steps', '–')} | {tr.get('wall_s', '–')} | {loss} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--queries", type=int, default=512, help="train queries (seeded sample)")
    ap.add_argument("--negatives", type=int, default=1, help="BM25 hard negatives per example")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--momentum", type=float, default=0.99, help="the momentum arm's encoder momentum")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--train-max-seq-length", type=int, default=128)
    ap.add_argument("--eval-max-seq-length", type=int, default=256)
    ap.add_argument("--eval-backend", default="openvino", choices=["openvino", "torch"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_memory_bank")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_bank")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from negforge.synth.data import load_beir

    meta = {"loadavg_before": loadavg()}
    t0 = time.perf_counter()
    records, mine_report = train_records(args)
    test = load_beir(args.data, "test")
    results = {arm: run_arm(arm, records, test, args) for arm in args.arms}
    for arm, r in results.items():
        if arm not in ("base", REF) and REF in results:
            for m in PAIRED:
                r[f"vs_ref_{m}"] = bootstrap_diff(r["per_query"][m], results[REF]["per_query"][m], args.bootstrap, 0)
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    meta.update(
        {
            "commands": f"`{cmd}`"
            + "".join(
                f"; arm {a} made by `{r['command']}` (load {r['loadavg']})"
                for a, r in results.items()
                if r.get("command") and r["command"] != cmd
            ),
            "loadavg_after": loadavg(),
            "data": Path(args.data).name,
            "wall_s_this_invocation": round(time.perf_counter() - t0, 1),
            "test_queries": len(next(iter(results.values()))["per_query"]["ndcg@10"]),
            "args": {k: str(v) for k, v in vars(args).items()},
            "note": (
                f"{len(records)} train queries, {args.steps} optimizer steps per arm (so batch 32 sees twice "
                f"the examples of batch 16), lr {args.lr}, warm-up 0.1, {args.negatives} BM25 negative(s) per example, "
                f"max_seq_length {args.train_max_seq_length} (train) / {args.eval_max_seq_length} (eval, {args.eval_backend}), seed "
                f"{args.seed}, loss mnrl_xbm (scale 20); each step pushes batch x (1 + negatives) passages into the "
                f"bank; Δ: paired bootstrap ({args.bootstrap} resamples) over test queries against batch 16 without "
                "a bank."
            ),
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    slim = {a: {k: v for k, v in r.items() if k != "per_query"} for a, r in results.items()}
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "mine": mine_report.to_dict(), "results": slim}, indent=2) + "\n"
    )
    md = render(results, meta)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
