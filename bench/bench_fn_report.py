"""False-negative control on SciFact train: train the cross-encoder verifier, then fn-report per verifier.

1. ``negforge verifier train`` (run as a subprocess, the command is recorded): the bundled MiniLM plus
   a new single-logit head, 1 epoch of BCE on (claim, positive) vs (claim, BM25 negative) pairs.
   The held-out queries are chosen here, not at random: every train query with >= 2 relevant docs
   (77 of 809) plus a seeded sample of the others, ``--heldout-queries`` in all. The cross-encoder
   never sees their positives, so it can be scored on their negatives and on planted FNs without leak.
2. ``fn_report`` (the library behind ``negforge fn-report``) on the records (``runs/default/mined.jsonl``
   from ``negforge run``: BM25 + dense negatives for all 809 train queries, LLM negatives for some):
   * ``embedding``, all queries: qrels + embedding-margin rule with the training encoder;
   * ``embedding`` and ``cross_encoder`` on the held-out queries only (same negatives, comparable);
   * **planted FN**: on queries with >= 2 relevant docs one relevant doc is moved from the positives
     to the negatives (row ``planted``). It is a real relevant abstract the rule must catch while
     comparing against the other positive: the model rules' recall on true false negatives, which
     the mined negatives cannot measure (the miners never return a qrels-positive).
3. LLM judge (``--judge N``, the bundled SmolLM2-135M through the local server): N negatives of the
   held-out queries plus their positives as a control. The judge's yes-rate on negatives means
   little unless it says yes to positives clearly more often.

Writes bench/results/fn_report.{json,md}, verifier_train.{json,md} and, per run, bench/results/fn_report/
run*.{json,md,png} (the PNGs: score distributions of positives, kept, dropped and certain FN per row).

    python bench/bench_fn_report.py                      # ~15 min on an idle 2-core machine
    python bench/bench_fn_report.py --judge 0 --max-pairs 600
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLANTED = "planted"


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def choose_heldout(qrels: dict[str, dict[str, int]], n: int, seed: int) -> list[str]:
    """Every query with >= 2 relevant docs, then a seeded sample of the others up to ``n``."""
    multi = sorted(q for q, d in qrels.items() if sum(s > 0 for s in d.values()) >= 2)
    single = sorted(q for q, d in qrels.items() if sum(s > 0 for s in d.values()) == 1)
    extra = random.Random(seed).sample(single, max(0, min(len(single), n - len(multi))))
    return sorted(multi + extra)


def train_cross_encoder(args: argparse.Namespace, heldout: list[str]) -> dict:
    """Run ``negforge verifier train``; reuse ``--ce-dir`` when it holds a model trained with the same config."""
    ce_dir = args.ce_dir
    cfg_path = ce_dir.parent / "verifier_train.yaml"
    cfg = {"heldout_ids": heldout, "max_pairs": args.max_pairs, "seed": 0, "lr": args.lr,
           "mine": {"num_negatives": args.train_negatives}}
    cmd = ["negforge", "verifier", "train", "--data", str(args.data), "--output", str(ce_dir),
           "--config", str(cfg_path), "--max-length", str(args.max_length), "--epochs", "1"]
    report_path = ce_dir / "train_report.json"
    if report_path.is_file() and not args.retrain:
        old = json.loads(report_path.read_text())
        same = (old["config"].get("heldout_ids") == heldout and old["config"].get("max_pairs") == args.max_pairs
                and old["config"]["max_length"] == args.max_length and old["config"]["lr"] == args.lr
                and old["config"]["mine"]["num_negatives"] == args.train_negatives)
        if same:
            logging.info("reusing the cross-encoder in %s (pass --retrain to train again)", ce_dir)
            return {"command": shlex.join(cmd), "reused": True, "wall_s": None, **old}
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(cfg))  # JSON is YAML
    logging.info("training: %s", shlex.join(cmd))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    return {"command": shlex.join(cmd), "reused": False, "wall_s": round(wall, 1),
            **json.loads(report_path.read_text())}


def plant(records, qrels):
    """Copies of the records where one relevant doc of a multi-positive query is moved to the negatives."""
    from negforge.synth.schema import Negative, Provenance, Source

    out = []
    for r in records:
        r = r.model_copy(deep=True)
        if len(r.positives) >= 2:
            p = r.positives.pop()
            r.negatives.append(Negative(text=p.text, title=p.title, doc_id=p.doc_id, source=Source.imported,
                                        provenance=Provenance(extra={PLANTED: True})))
        out.append(r)
    return out


def group(_record, n) -> str:
    return PLANTED if n.provenance.extra.get(PLANTED) else n.source.value


def run_report(name, records, data, cfg, out_dir, prefix):
    from negforge.synth.fn_report import fn_report

    t0 = time.perf_counter()
    _, report = fn_report(records, data, cfg, out_dir=out_dir, show_progress=False, group=group, prefix=prefix)
    rep = report.to_dict()
    rep["wall_s"] = round(time.perf_counter() - t0, 1)
    rep["name"] = name
    logging.info("%s: %.1f s", name, rep["wall_s"])
    return rep


def judge_control(records, n: int, seed: int, cache_dir: str) -> dict:
    """LLM judge on ``n`` negatives and on the same queries' positives (the control)."""
    from negforge.synth.backends.factory import open_backend
    from negforge.synth.schema import Negative, Source
    from negforge.synth.verifiers.llm_judge import DEFAULT_JUDGE, judge_checks

    pool = [(r, x) for r in records for x in r.negatives if not x.provenance.extra.get(PLANTED)]
    rng = random.Random(seed)
    negs = rng.sample(pool, min(n, len(pool)))
    by_src: dict[str, int] = {}
    for _, x in negs:
        by_src[x.source.value] = by_src.get(x.source.value, 0) + 1
    recs = list({r.id: r for r, _ in negs}.values())
    poss = [(r, Negative(text=p.text, title=p.title, doc_id=p.doc_id, source=Source.imported)) for r in recs
            for p in r.positives[:1]]
    t0 = time.perf_counter()
    with open_backend(DEFAULT_JUDGE, cache_dir=cache_dir) as backend:
        checks = judge_checks(negs + poss, backend, DEFAULT_JUDGE.params, show_progress=True)
        usage = backend.usage.to_dict()
    wall = time.perf_counter() - t0

    def rates(cs, pairs):
        rows: dict[str, dict[str, int]] = {}
        for (_, x), c in zip(pairs, cs):
            for key in (x.source.value, "all"):
                row = rows.setdefault(key, {"n": 0, "yes": 0, "partly": 0, "no": 0, "unparsed": 0})
                row["n"] += 1
                s = c.scores.get("llm_judge")
                row["unparsed" if s is None else {1.0: "yes", 0.5: "partly", 0.0: "no"}[s]] += 1
        return rows

    return {"negatives": rates(checks[:len(negs)], negs)["all"] | {"by_source": rates(checks[:len(negs)], negs)},
            "positives": rates(checks[len(negs):], poss)["all"], "wall_s": round(wall, 1), "usage": usage,
            "model": DEFAULT_JUDGE.gguf, "sampled_by_source": by_src}


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(res: dict) -> str:
    t, m = res["train"], res["machine"]
    tr = t["result"]
    lines = ["# False-negative control on SciFact train", "",
             f"{m['cpus']} CPU cores ({m['platform']}), load average {m['load_before']} before / {m['load_after']} "
             f"after (shared machine). Records: `{res['records_path']}` ({res['records']} queries, "
             f"{res['negatives']} negatives). Rule: drop if score > {res['perc_pos']} × positive score "
             f"(abs_margin {res['abs_margin']}).", "",
             "## Cross-encoder verifier (`negforge verifier train`)", "",
             f"`{t['command']}`" + (" (reused)" if t.get("reused") else ""), "",
             f"Bundled MiniLM + a new head, 1 epoch, lr {t['config']['lr']:g}, max_length {t['config']['max_length']}, "
             f"{tr['train_pairs']} training pairs from {tr['train_queries']} queries (BM25 negatives, "
             f"qrels-positives removed) in {tr['train_s']} s ({tr['pairs_per_s']} pairs/s).", "",
             "| held-out queries | held-out pairs | accuracy @0.5 | majority class | ROC-AUC |",
             "|---:|---:|---:|---:|---:|",
             f"| {tr['heldout_queries']} | {tr['heldout_pairs']} | {tr['accuracy']:.3f} | "
             f"{tr['majority_accuracy']:.3f} | {tr['roc_auc']:.3f} |", ""]
    lines += ["## False negatives per source and verifier", "",
              "*certain FN*: the qrels mark the negative relevant. *planted*: a relevant doc moved into the "
              "negatives (queries with ≥ 2 relevant docs). *model*: the model rule alone (without the qrels "
              "rule), run on every negative. *drops that are FN*: certain FN among the rule's drops; the other "
              "drops are unlabelled (hard, or relevant but unjudged: SciFact labels ~1.1 doc per query).", "",
              "| run | queries | row | negatives | certain FN | model: dropped | model: FN caught | "
              "model: FN after | drops that are FN | all rules: kept |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for rep in res["reports"]:
        for src, row in rep["sources"].items():
            mo, al = row["model"], row["all"]
            lines.append(f"| {rep['name']} | {rep['records']} | {src} | {row['negatives']} | {row['certain_fn']} | "
                         f"{pct(mo['dropped_share'])} ({mo['dropped']}) | {pct(mo['fn_recall'])} "
                         f"({mo['fn_caught']}/{row['certain_fn']}) | {pct(mo['fn_after'])} | "
                         f"{pct(mo['drop_precision'])} | {pct(al['kept_share'])} ({al['kept']}) |")
    lines += ["", "Threshold sweep (planted runs, all rows): share dropped and planted-FN recall by perc_pos.", "",
              "| run | score | perc_pos | dropped | FN recall | drops that are FN |", "|---|---|---:|---:|---:|---:|"]
    for rep in res["reports"]:
        if PLANTED not in rep["sources"]:
            continue
        for score, rows in rep["sweep"].items():
            lines += [f"| {rep['name']} | {score} | {r['perc_pos']} | {pct(r['dropped_share'])} | "
                      f"{pct(r['fn_recall'])} | {pct(r['drop_precision'])} |" for r in rows]
    j = res.get("judge")
    if j:
        def share(row, k):
            return pct(row[k] / row["n"]) if row["n"] else "–"
        lines += ["", f"## LLM judge ({j['model']}, {j['wall_s']} s)", "",
                  "| pairs | n | yes | partly | no | unparseable |", "|---|---:|---:|---:|---:|---:|"]
        for label, row in [("negatives (sampled)", j["negatives"]), ("positives (control)", j["positives"])]:
            lines.append(f"| {label} | {row['n']} | {share(row, 'yes')} | {share(row, 'partly')} | "
                         f"{share(row, 'no')} | {share(row, 'unparsed')} |")
        for src, row in sorted(j["negatives"]["by_source"].items()):
            if src != "all":
                lines.append(f"| negatives: {src} | {row['n']} | {share(row, 'yes')} | {share(row, 'partly')} | "
                             f"{share(row, 'no')} | {share(row, 'unparsed')} |")
    lines += ["", "Plots (score distributions per row: positives, kept, dropped, certain FN): "
              + ", ".join(f"`fn_report/{Path(p).name}`" for rep in res["reports"] for p in rep.get("plots", [])) + ".",
              f"Command: `{res['command']}` ({res['wall_s']} s in all).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--records", type=Path, default=ROOT / "runs" / "default" / "mined.jsonl",
                    help="records with mined (and LLM) negatives for the train split (negforge run / mine)")
    ap.add_argument("--ce-dir", type=Path, default=ROOT / "runs" / "bench_fn" / "cross_encoder")
    ap.add_argument("--retrain", action="store_true", help="train the cross-encoder even if --ce-dir has one")
    ap.add_argument("--heldout-queries", type=int, default=100)
    ap.add_argument("--max-pairs", type=int, default=1200, help="training pairs (seeded sample)")
    ap.add_argument("--train-negatives", type=int, default=2, help="BM25 negatives per training query")
    ap.add_argument("--max-length", type=int, default=128, help="cross-encoder tokens per pair")
    ap.add_argument("--lr", type=float, default=8e-5, help="cross-encoder learning rate (few steps: higher than 2e-5)")
    ap.add_argument("--judge", type=int, default=16, help="negatives for the LLM judge (0: skip)")
    ap.add_argument("--perc-pos", type=float, default=0.95)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--only-train", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "sentence_transformers", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from negforge.synth.config import VerifyConfig
    from negforge.synth.data import load_beir
    from negforge.synth.errors import InputError
    from negforge.synth.io import read_records, write_json, write_lines

    t_all, load_before = time.perf_counter(), load_avg()
    data = load_beir(args.data, "train")
    heldout = choose_heldout(data.qrels, args.heldout_queries, seed=0)
    train = train_cross_encoder(args, heldout)
    tr = train["result"]
    print(f"cross-encoder: held-out accuracy {tr['accuracy']:.3f} (majority {tr['majority_accuracy']:.3f}), "
          f"ROC-AUC {tr['roc_auc']:.3f}, {tr['train_pairs']} pairs in {tr['train_s']} s")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "verifier_train.json", train)
    if args.only_train:
        return
    if not args.records.is_file():
        raise InputError(f"{args.records}: no records; run `negforge run` (or `negforge mine`) first or pass --records")
    records = read_records(args.records)
    held_set = set(heldout)
    held = [r for r in records if r.id in held_set]
    cache = str(ROOT / ".cache" / "negforge" / "embeddings")
    base = dict(perc_pos=args.perc_pos, cache_dir=cache, batch_size=32)
    emb = VerifyConfig(verifiers=["qrels", "embedding"], **base)
    ce = VerifyConfig(verifiers=["qrels", "cross_encoder"], cross_encoder=str(args.ce_dir), **base)
    runs = args.out / "fn_report"  # per run: json, md and the score plots
    reports = [
        run_report("embedding, all queries + planted", plant(records, data.qrels), data, emb, runs, "run1_all"),
        run_report("embedding, held-out + planted", plant(held, data.qrels), data, emb, runs, "run2_heldout"),
        run_report("cross_encoder, held-out + planted", plant(held, data.qrels), data, ce, runs, "run3_heldout"),
    ]
    judge = judge_control(held, args.judge, 0, str(ROOT / ".cache" / "negforge" / "llm")) if args.judge else None
    res = {"command": "python bench/bench_fn_report.py " + shlex.join(sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True),
                       "load_before": load_before, "load_after": load_avg()},
           "records_path": str(args.records.relative_to(ROOT) if args.records.is_relative_to(ROOT) else args.records),
           "records": len(records), "negatives": sum(len(r.negatives) for r in records),
           "heldout_queries": len(held), "perc_pos": args.perc_pos, "abs_margin": 0.0,
           "train": train, "reports": reports, "judge": judge, "wall_s": round(time.perf_counter() - t_all, 1)}
    write_json(args.out / "fn_report.json", res)
    md = markdown(res)
    write_lines(args.out / "fn_report.md", [md + "\n"])
    tr_md = "\n".join(md.split("## False negatives")[0].splitlines()[2:])
    write_lines(args.out / "verifier_train.md", ["# Cross-encoder verifier on SciFact train\n", tr_md + "\n"])
    print(md)


if __name__ == "__main__":
    main()
