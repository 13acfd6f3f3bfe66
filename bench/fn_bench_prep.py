"""Inputs of the false-negative bench (``bench_fn_report.py``): mined records and a trained cross-encoder.

Per dataset (a BEIR folder, train split):

* ``records``: BM25 + dense negatives (8 each, ranks 1-50 after the labelled positives are removed)
  for every train query, written once to ``runs/bench_fn/<name>/mined.jsonl`` and reused;
* ``heldout``: the queries the false-negative curves are measured on. Queries with >= 2 relevant
  documents come first (one relevant document of each is planted among its negatives), a seeded
  sample of at most ``n``, filled up with single-positive queries;
* ``negforge verifier train`` on the other queries (run as a subprocess; the command is recorded),
  reused when ``train_report.json`` holds the same config.
"""

from __future__ import annotations

import json
import logging
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def choose_heldout(qrels: dict[str, dict[str, int]], n: int, seed: int) -> list[str]:
    """At most ``n`` queries: a seeded sample of those with >= 2 relevant docs, filled up with single-positive ones."""
    multi = sorted(q for q, d in qrels.items() if sum(s > 0 for s in d.values()) >= 2)
    single = sorted(q for q, d in qrels.items() if sum(s > 0 for s in d.values()) == 1)
    rng = random.Random(seed)
    multi = rng.sample(multi, min(n, len(multi)))
    return sorted(multi + rng.sample(single, max(0, min(len(single), n - len(multi)))))


def mined_records(data_dir: Path, out: Path, cache_dir: str, sources: list[str]):
    """BM25 + dense negatives for every train query (written once, then read back)."""
    from negforge.mixers.mine import mine_records
    from negforge.synth.config import MineConfig
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.synth.io import read_records, write_records

    if out.is_file():
        logging.info("reusing %s", out)
        return read_records(out)
    data = load_beir(data_dir, "train")
    cfg = MineConfig(sources=sources, num_negatives=8, range_max=50, cache_dir=cache_dir)
    t = time.perf_counter()
    records, report = mine_records(records_from_beir(data), data, cfg, show_progress=False)
    logging.info("mined %s in %.1f s\n%s", out, time.perf_counter() - t, report.table())
    write_records(out, records)
    return records


def train_cross_encoder(data_dir: Path, ce_dir: Path, heldout: list[str], train_cfg: dict, retrain: bool) -> dict:
    """``negforge verifier train`` with ``heldout`` held out; reuse ``ce_dir`` when its config matches."""
    cfg_path = ce_dir.parent / f"{ce_dir.name}.yaml"
    cfg = {"heldout_ids": heldout, **train_cfg}
    cmd = [
        sys.executable,
        "-m",
        "negforge",
        "verifier",
        "train",
        "--data",
        str(data_dir),
        "--output",
        str(ce_dir),
        "--config",
        str(cfg_path),
    ]
    report_path = ce_dir / "train_report.json"
    if report_path.is_file() and not retrain:
        old = json.loads(report_path.read_text())
        if all(old["config"].get(k) == v for k, v in cfg.items() if k != "mine") and all(
            old["config"]["mine"].get(k) == v for k, v in cfg.get("mine", {}).items()
        ):
            logging.info("reusing the cross-encoder in %s (pass --retrain to train again)", ce_dir)
            return {"command": shlex.join(cmd[1:]), "reused": True, **old}
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(cfg))  # JSON is YAML
    logging.info("training: %s", shlex.join(cmd))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = round(time.perf_counter() - t0, 1)
    return {
        "command": "python -m " + shlex.join(cmd[2:]),
        "reused": False,
        "wall_s": wall,
        **json.loads(report_path.read_text()),
    }


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="mine the bench records and train the cross-encoder verifier")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--heldout-queries", type=int, default=100)
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--max-positives", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=7e-5)
    ap.add_argument("--freeze-layers", type=int, default=0)
    ap.add_argument("--sources", default="bm25,dense", help="miners for the records and the training negatives")
    ap.add_argument("--train-negatives", type=int, default=2, help="training negatives per source per query")
    ap.add_argument("--dev-pairs", type=int, default=400)
    ap.add_argument("--evals", type=int, default=6)
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(ROOT))
    from negforge.synth.data import load_beir

    run = ROOT / "runs" / "bench_fn" / args.name
    cache = str(ROOT / ".cache" / "negforge" / "embeddings")
    sources = args.sources.split(",")
    mined_records(args.data, run / "mined.jsonl", cache, sources)
    heldout = choose_heldout(load_beir(args.data, "train").qrels, args.heldout_queries, seed=0)
    cfg = {
        "max_pairs": args.max_pairs,
        "max_positives_per_query": args.max_positives,
        "max_length": args.max_length,
        "lr": args.lr,
        "freeze_layers": args.freeze_layers,
        "dev_max_pairs": args.dev_pairs,
        "evals": args.evals,
        "mine": {"cache_dir": cache, "sources": sources, "num_negatives": args.train_negatives},
    }
    res = train_cross_encoder(args.data, run / "cross_encoder", heldout, cfg, args.retrain)
    print(json.dumps(res["result"], indent=1))


if __name__ == "__main__":
    main()
