"""False-negative curves on SciFact and NFCorpus: every verifier's trade-off, and the cross-encoder's held-out AUC.

Per dataset (train split; inputs from ``bench/fn_bench_prep.py``: BM25 + dense negatives, 8 each, for
every train query, and a cross-encoder trained by ``negforge verifier train`` on all but the held-out
queries):

1. on the held-out queries, one relevant document of every query with >= 2 is **planted** among its
   negatives (:func:`negforge.synth.fn_curves.plant_false_negatives`): a real false negative the
   verifiers must catch while comparing against the other positives;
2. each verifier scores every negative independently: ``embedding`` (the training encoder's cosine,
   positive-aware), ``cross_encoder`` (P(relevant), positive-aware) and, with ``--judge N``, the
   ``llm_judge`` (the bundled SmolLM2-135M) on a seeded sample of N planted and N other negatives;
3. the curves (:func:`negforge.synth.fn_curves.fn_curves`): planted-FN recall against the share of
   the other negatives dropped as the threshold moves; the ``any`` / ``both`` combinations of the
   two positive-aware rules as Pareto fronts; today's defaults marked;
4. transfer: the thresholds that are best at <= 15 % dropped on one dataset, applied to the other.

Writes bench/results/fn_report.{json,md} and bench/results/fn_report/curves_<dataset>.png.

    python bench/fn_bench_prep.py --data ../shared/data/scifact --name scifact --max-pairs 2200
    python bench/bench_fn_report.py --datasets scifact
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = {name: ROOT.parent / "shared" / "data" / name for name in ("scifact", "nfcorpus")}
BUDGET = 0.15


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def judge_sample(planted, fn: np.ndarray, n: int, seed: int):
    """Records holding ``n`` planted and ``n`` other negatives (seeded), same order as ``planted``."""
    idx = [(i, j) for i, r in enumerate(planted) for j in range(len(r.negatives))]
    flags = dict(zip(idx, fn))
    rng = random.Random(seed)
    pick = set(rng.sample([k for k in idx if flags[k]], min(n, int(fn.sum()))))
    pick |= set(rng.sample([k for k in idx if not flags[k]], min(n, int((~fn).sum()))))
    out = []
    for i, r in enumerate(planted):
        negs = [x for j, x in enumerate(r.negatives) if (i, j) in pick]
        if negs:
            out.append(r.model_copy(update={"negatives": negs}))
    return out


def apply_threshold(scores: dict[str, np.ndarray], fn: np.ndarray, name: str, threshold) -> dict:
    """A curve point's threshold (a float, or {verifier: t} for a combination) on other scores."""
    from negforge.synth.fn_curves import _point

    if isinstance(threshold, dict):
        a, b = list(threshold)
        fa = np.nan_to_num(scores[a], nan=-np.inf) > (np.inf if threshold[a] is None else threshold[a])
        fb = np.nan_to_num(scores[b], nan=-np.inf) > (np.inf if threshold[b] is None else threshold[b])
        drop = fa | fb if " any " in name else fa & fb
    else:
        drop = np.nan_to_num(scores[name], nan=-np.inf) > threshold
    return _point(drop, fn, threshold=threshold)


def run_dataset(spec: str, args) -> dict:
    from negforge.synth.config import VerifyConfig
    from negforge.synth.data import load_beir
    from negforge.synth.fn_curves import fn_curves, known_fn, plant_false_negatives, plot_curves, score_negatives
    from negforge.synth.io import read_records

    name, _, path = spec.partition("=")  # "scifact", or "name=/path/to/beir"
    run = ROOT / "runs" / "bench_fn" / name
    ce_dir = run / "cross_encoder"
    train = json.loads((ce_dir / "train_report.json").read_text())
    data = load_beir(path or DATA[name], "train")
    held_ids = set(train["heldout_query_ids"])
    held = [r for r in read_records(run / "mined.jsonl") if r.id in held_ids]
    if args.max_positives:  # NFCorpus queries have dozens: keep a seeded few (one of them is planted)
        held = [
            r.model_copy(update={"positives": random.Random(f"0:{r.id}").sample(r.positives, args.max_positives)})
            if len(r.positives) > args.max_positives
            else r
            for r in held
        ]
    planted = plant_false_negatives(held)
    fn = known_fn(planted, data.qrels)
    cache = str(ROOT / ".cache" / "negforge" / "embeddings")
    cfg = VerifyConfig(cross_encoder=str(ce_dir), cache_dir=cache, batch_size=32)
    t = time.perf_counter()
    # --no-corpus-vectors-for: encode only the texts scored here, not the whole corpus (when it is not cached)
    corpus = None if name in args.no_corpus_vectors_for.split(",") else data.corpus
    # scores are reused when the same cross-encoder scored the same planted negatives before
    key = f"{(ce_dir / 'train_report.json').stat().st_mtime_ns}-{args.max_positives}-{len(fn)}"
    cached = run / f"scores-{key}.npz"
    if cached.is_file():
        scores = dict(np.load(cached))
    else:
        scores = score_negatives(planted, cfg, ["embedding", "cross_encoder"], data.qrels, corpus)
        np.savez(cached, **scores)
    score_s = time.perf_counter() - t
    res = fn_curves(planted, scores, fn, cfg)
    res.update(
        name=name,
        score_s=round(score_s, 1),
        train=train,
        png=str(
            plot_curves(
                res,
                args.out / "fn_report" / f"curves_{name}.png",
                title=f"{name}: {int(fn.sum())} planted FN, {int((~fn).sum())} negatives, "
                f"{len(planted)} held-out queries (★ default)",
            )
        ),
    )
    res["scores"] = {k: v for k, v in scores.items()}
    res["fn"] = fn
    if args.judge:
        sub = judge_sample(planted, fn, args.judge, 0)
        sfn = known_fn(sub, data.qrels)
        jcfg = cfg.model_copy(update={"judge_cache_dir": str(ROOT / ".cache" / "negforge" / "llm")})
        t = time.perf_counter()
        sub_scores = score_negatives(sub, jcfg, ["embedding", "cross_encoder", "llm_judge"], data.qrels, corpus)
        res["judge"] = fn_curves(sub, sub_scores, sfn, cfg) | {"wall_s": round(time.perf_counter() - t, 1)}
        res["judge"]["png"] = str(
            plot_curves(
                res["judge"],
                args.out / "fn_report" / f"curves_{name}_judge.png",
                title=f"{name}: judge sample, {int(sfn.sum())} planted FN, {int((~sfn).sum())} negatives",
            )
        )
    return res


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(out: dict) -> str:
    from negforge.synth.fn_curves import markdown as curves_md

    lines = [
        "# False-negative control: curves per verifier",
        "",
        f"{out['machine']['cpus']} CPU cores, load average {out['machine']['load_before']} before / "
        f"{out['machine']['load_after']} after (shared machine: other engineers' tests ran beside it).",
        f"Command: `{out['command']}` ({out['wall_s']} s).",
        "",
        "## Cross-encoder verifier (`negforge verifier train`, bundled MiniLM + a new head, CPU fp32)",
        "",
        "| dataset | train pairs (queries) | steps | kept step (dev ROC-AUC) | train s | held-out queries | "
        "held-out pairs | accuracy @0.5 (majority) | held-out ROC-AUC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in out["datasets"]:
        tr, cfg = d["train"]["result"], d["train"]["config"]
        best = max(tr["dev"], key=lambda x: x["dev_roc_auc"]) if tr["dev"] else None
        lines.append(
            f"| {d['name']} | {tr['train_pairs']} ({tr['train_queries']}) | {tr['steps']} | "
            f"{tr['best_step']} ({best['dev_roc_auc']:.3f}) | {tr['train_s']} | {tr['heldout_queries']} | "
            f"{tr['heldout_pairs']} | {tr['accuracy']:.3f} ({tr['majority_accuracy']:.3f}) | "
            f"**{tr['roc_auc']:.3f}** |"
            if best
            else f"| {d['name']} | – |"
        )
        lines.append("")
        lines.append(
            f"{d['name']}: max_length {cfg['max_length']}, lr {cfg['lr']:g}, batch {cfg['batch_size']}, "
            f"{cfg['epochs']} epoch, negatives {cfg['mine']['sources']} × {cfg['mine']['num_negatives']} "
            f"per query (top {cfg['mine']['range_max']}, sampled), dev curve: "
            + ", ".join(f"{x['dev_roc_auc']:.3f}@{x['step']}" for x in tr["dev"])
            + "."
        )
        lines.append(f"Command: `{d['train'].get('command', '')}`.")
        lines.append("")
    lines += ["## Curves: planted-false-negative recall vs share of negatives dropped", ""]
    for d in out["datasets"]:
        lines += [
            curves_md(d, f"{d['name']} (held-out queries; scoring {d['score_s']} s)"),
            "",
            f"![{d['name']}](fn_report/{Path(d['png']).name})",
            "",
        ]
        if d.get("judge"):
            lines += [curves_md(d["judge"], f"{d['name']}: LLM judge sample ({d['judge']['wall_s']} s)"), ""]
    if out.get("transfer"):
        lines += [
            "## Transfer: thresholds best at ≤ 15 % dropped on one dataset, applied to the other",
            "",
            "| curve | chosen on | threshold | there: dropped / recall | applied to | dropped | recall |",
            "|---|---|---|---|---|---:|---:|",
        ]
        for t in out["transfer"]:
            lines.append(
                f"| {t['curve']} | {t['from']} | {t['threshold']} | {pct(t['src']['dropped'])} / "
                f"{pct(t['src']['recall'])} | {t['to']} | {pct(t['dst']['dropped'])} | "
                f"{pct(t['dst']['recall'])} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="scifact,nfcorpus", help="names under ../shared/data, or name=BEIR_DIR")
    ap.add_argument("--judge", type=int, default=0, help="planted + other negatives for the LLM judge (0: skip)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--max-positives", type=int, default=None, help="positives kept per held-out query")
    ap.add_argument(
        "--no-corpus-vectors-for",
        default="",
        help="datasets (comma-separated) whose corpus embeddings are not cached: encode only the scored texts",
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "sentence_transformers", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from negforge.synth.fn_curves import at_budget
    from negforge.synth.io import write_json, write_lines

    t0, before = time.perf_counter(), load_avg()
    (args.out / "fn_report").mkdir(parents=True, exist_ok=True)
    results = [run_dataset(n.strip(), args) for n in args.datasets.split(",") if n.strip()]
    transfer = []
    for src in results:
        for dst in results:
            if src is dst:
                continue
            for curve, c in src["curves"].items():
                p = at_budget(c["points"], BUDGET)
                if p:
                    transfer.append(
                        {
                            "curve": curve,
                            "from": src["name"],
                            "to": dst["name"],
                            "threshold": p["threshold"],
                            "src": p,
                            "dst": apply_threshold(dst["scores"], dst["fn"], curve, p["threshold"]),
                        }
                    )
    for r in results:
        r.pop("scores"), r.pop("fn")
    out = {
        "command": "python bench/bench_fn_report.py " + shlex.join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True),
            "load_before": before,
            "load_after": load_avg(),
        },
        "datasets": results,
        "transfer": transfer,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_json(args.out / "fn_report.json", out)
    md = markdown(out)
    write_lines(args.out / "fn_report.md", [md])
    print(md)


if __name__ == "__main__":
    main()
