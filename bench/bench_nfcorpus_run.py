"""The whole pipeline on NFCorpus: ``negforge run configs/nfcorpus.yaml``, timed, base vs fine-tuned.

Runs the real CLI in a subprocess (fresh: every stage is redone; the corpus embeddings of the base
model may come from the shared cache, as in any second run), then reads ``<out_dir>/metrics.json``.
Writes bench/results/nfcorpus_run.json and .md (metrics before/after, stage timings, wall time, load).

    python bench/bench_nfcorpus_run.py                       # ~15 min on a 2-core CPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "nfcorpus.yaml")
    ap.add_argument("--out-dir", default="runs/nfcorpus")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "nfcorpus_run")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    cmd = [sys.executable, "-m", "negforge", "run", str(args.config), "--out", args.out_dir, "--fresh", "-q"]
    for s in args.sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        sys.exit(proc.returncode)
    run = json.loads((ROOT / args.out_dir / "metrics.json").read_text())
    train = run["summaries"].get("train", [{}])[-1]
    out = {
        "command": "python bench/bench_nfcorpus_run.py" + "".join(f" --set {s}" for s in args.sets),
        "cli": " ".join(
            ["python -m negforge run", str(args.config.relative_to(ROOT)), "--out", args.out_dir, "--fresh"]
        ),
        "wall_s": round(wall, 1),
        "loadavg_before": load,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "metrics_before": run["metrics_before"],
        "metrics_after": run["metrics_after"],
        "timings_s": run["timings_s"],
        "train": {k: train.get(k) for k in ("loss", "steps", "examples", "samples_per_s", "columns")},
        "stdout_tail": proc.stdout[-2000:],
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# negforge run on NFCorpus (test split, full corpus)",
        "",
        f"Command: `{out['cli']}` (via `{out['command']}`); wall {wall / 60:.1f} min; load average before "
        f"{' '.join(load)}.",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for name, key in (("base (all-MiniLM-L6-v2)", "metrics_before"), ("fine-tuned", "metrics_after")):
        lines.append(f"| {name} | " + " | ".join(f"{run[key][m]:.4f}" for m in METRICS) + " |")
    lines += [
        "",
        "Stage timings (s): " + ", ".join(f"{k} {v}" for k, v in run["timings_s"].items()),
        f"Training: {out['train']['loss']}, {out['train']['steps']} steps, {out['train']['examples']} examples "
        f"available, {out['train']['samples_per_s']} samples/s.",
    ]
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
