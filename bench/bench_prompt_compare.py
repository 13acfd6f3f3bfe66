"""The two built-in flows side by side: ``negforge prompt compare mar counterfactual`` on SciFact (train) and
TREC DL 2019 (test), through the CLI's real entry point with the bundled SmolLM2-135M on the local server.

Per corpus and flow the summary holds: parse failures, drafts, drafts kept after verification (the flow's
own checks and the embedding verifier, positive-aware rule), hardness = cos(query, negative) /
cos(query, positive) with the bundled MiniLM (median and mean over the negatives scored), and the shortcut
AUC (cross-validated logistic regression on MiniLM embeddings + length/punctuation features, usable
negatives vs as many real documents of the corpus) with its 95% bootstrap interval. With a handful of
negatives per flow that interval is wide: read it, not the point estimate.

Writes bench/results/prompt_compare.{json,md} and the full side-by-side reports under
bench/results/prompt_compare/<corpus>/compare.{md,html,json}.

    flock /tmp/negforge-heavy.lock python bench/bench_prompt_compare.py             # ~6 min on 2 busy cores
    python bench/bench_prompt_compare.py --sample 10 --negatives 2 --corpora scifact
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SPLITS = {"scifact": "train", "trec-dl-2019": "test", "nfcorpus": "train"}
KEYS = [
    "drafts",
    "parse_failures",
    "analyses_failed",
    "dropped",
    "negatives",
    "verifier_kept_rate",
    "usable",
    "usable_per_draft",
    "hardness_median",
    "hardness_mean",
    "shortcut_auc",
    "shortcut_interval",
    "completion_tokens",
    "wall_s",
]


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def compare(corpus: str, args: argparse.Namespace, out: Path) -> tuple[list[str], dict, float]:
    cmd = [
        sys.executable,
        "-m",
        "negforge",
        "prompt",
        "compare",
        "mar",
        "counterfactual",
        "-o",
        str(out),
        "--sample",
        str(args.sample),
        "-d",
        str(DATA / corpus),
        "--split",
        SPLITS[corpus],
        "-q",
        "--set",
        f"num_negatives={args.negatives}",
        "--set",
        "reflection_rounds=1",
        "--set",
        f"max_prompt_words={args.prompt_words}",
        "--set",
        f"llm.params.max_tokens={args.max_tokens}",
        "--set",
        "llm.params.temperature=0.0",
        "--set",
        "llm.concurrency=2",
        "--set",
        "llm.timeout_s=900",
        "--set",
        "profile.examples=2",
        "--set",
        "profile.example_words=40",
        "--set",
        f"cache_dir={args.cache_dir}",
    ]
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    print(res.stdout)
    return cmd, json.loads((out / "compare.json").read_text()), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="scifact,trec-dl-2019")
    ap.add_argument("--sample", type=int, default=3)
    ap.add_argument("--negatives", type=int, default=2)
    ap.add_argument("--prompt-words", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=220)
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "bench-prompt-compare"))
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    results = Path(args.results)
    summary: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_before": load_avg(),
        "model": "SmolLM2-135M-Instruct Q4_1 (bundled), local xllamacpp server",
        "settings": vars(args),
        "corpora": {},
    }
    for corpus in args.corpora.split(","):
        out = results / "prompt_compare" / corpus
        cmd, stats, wall = compare(corpus, args, out)
        summary["corpora"][corpus] = {
            "command": shlex.join(["python", "-m", "negforge", *cmd[3:]])
            .replace(str(ROOT) + "/", "")
            .replace(str(DATA), "../shared/data"),
            "wall_s": round(wall, 1),
            "load_after": load_avg(),
            "profile": {k: stats["A"]["profile"][k] for k in ("description", "description_source", "length")},
            "flows": {s["flow"]: {k: s.get(k) for k in KEYS} for s in stats.values()},
        }
    summary["load_after"] = load_avg()
    (results / "prompt_compare.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# mar vs counterfactual (bundled SmolLM2-135M)",
        "",
        f"load average before {summary['load_before']}, after {summary['load_after']}; {summary['machine']}",
        "",
    ]
    for corpus, c in summary["corpora"].items():
        lines += [
            f"## {corpus}",
            "",
            f"`{c['command']}` ({c['wall_s']} s)",
            "",
            f"profile: description {c['profile']['description']!r} ({c['profile']['description_source']}), "
            f"length {c['profile']['length']}",
            "",
            "| | " + " | ".join(c["flows"]) + " |",
            "|---|" + "---:|" * len(c["flows"]),
        ]
        lines += [f"| {k} | " + " | ".join(str(f[k]) for f in c["flows"].values()) + " |" for k in KEYS]
        lines += ["", f"full report: bench/results/prompt_compare/{corpus}/compare.md", ""]
    (results / "prompt_compare.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
