"""Ray's cost on one machine: the same generation job in one process and on a local Ray cluster, at the same
total number of requests in flight, against OpenAI-compatible servers with a fixed latency per request.

anchor: ``run_generate_job`` in this process, ``llm.concurrency = A x C``; ours: ``generate.ray.enabled`` with
``A`` actors of concurrency ``C`` each, one server per actor (``ray.base_urls``). The servers are
``tests/fault_server.py`` answering deterministic MAR replies after ``--delay-s`` (a stand-in for an LLM server's
latency; a real LLM server's throughput is what more actors on more machines buy, and this machine has one).
Checked: the outputs are equal record for record. The figure is Ray's overhead: cluster start, actor start,
object transfer. Results: ``bench/results/ray.json`` and ``ray.md``.

    python bench/bench_ray.py                        # ~2 minutes on 2 cores
    python bench/bench_ray.py --records 64 --actors 2 4
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fault_server import FaultServer, mar_reply  # noqa: E402


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--actors", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--in-flight", type=int, default=8, help="total requests in flight (A x C), the same everywhere")
    ap.add_argument("--delay-s", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    from negforge.synth.config import GenerateConfig, LLMConfig, ProfileConfig, RayConfig
    from negforge.synth.io import read_records
    from negforge.synth.job import run_generate_job
    from negforge.synth.params import GenParams
    from negforge.synth.schema import Passage, Record

    def make(n: int) -> list[Record]:
        return [
            Record(
                id=f"b{i}",
                query=f"query number {i} about subject {i % 7} [r{i}]",
                positives=[Passage(text=f"A passage of some length that answers query {i} on subject {i % 7}.")],
            )
            for i in range(n)
        ]

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    servers = [FaultServer(reply_fn=mar_reply, delay_s=args.delay_s).start() for _ in range(max(args.actors))]
    rows, outputs = [], {}
    try:

        def cfg(concurrency: int, ray: RayConfig | None = None) -> GenerateConfig:
            llm = LLMConfig(
                base_url=servers[0].base_url,
                model="fault-mar",
                concurrency=concurrency,
                timeout_s=60,
                params=GenParams(max_tokens=200, temperature=0.0),
            )
            return GenerateConfig(
                llm=llm,
                num_negatives=2,
                reflection_rounds=1,
                seed=1,
                cache_dir=None,
                batch_size=args.batch_size,
                profile=ProfileConfig(describe_with_llm=False),
                ray=ray or RayConfig(),
            )

        runs = [("anchor: one process", 1, args.in_flight, None)]
        for a in args.actors:
            c = max(1, args.in_flight // a)
            runs.append(
                (
                    f"ours: ray, {a} actors",
                    a,
                    c,
                    RayConfig(
                        enabled=True,
                        num_cpus=2,
                        actors=a,
                        cpus_per_actor=2 / a,
                        base_urls=[s.base_url for s in servers[:a]],
                    ),
                )
            )
        for n, (name, a, c, ray) in [(n, r) for n in args.records for r in runs]:
            recs = make(n)
            out = tmp / f"{len(rows)}.jsonl"
            before = loadavg()
            t0 = time.perf_counter()
            rep = run_generate_job(recs, cfg(c, ray), out, show_progress=False)
            wall = time.perf_counter() - t0
            outputs[(n, name)] = {r.id: r for r in read_records(out)}
            rows.append(
                {
                    "records_in": n,
                    "run": name,
                    "actors": a,
                    "concurrency_per_actor": c,
                    "records": rep.records_done,
                    "requests": rep.usage.get("calls", 0),
                    "wall_s": round(wall, 2),
                    "records_per_s": round(rep.records_done / wall, 2),
                    "loadavg_before": before,
                }
            )
            print(rows[-1], flush=True)
    finally:
        for s in servers:
            s.stop()
    equal = all(o == outputs[(n, rows[0]["run"])] for (n, _), o in outputs.items())
    anchor = {r["records_in"]: r["wall_s"] for r in rows if r["actors"] == 1}
    for r in rows:
        r["wall_vs_anchor"] = round(r["wall_s"] / anchor[r["records_in"]], 2)
        r["extra_s"] = round(r["wall_s"] - anchor[r["records_in"]], 2)
    result = {
        "rows": rows,
        "outputs_equal": equal,
        "delay_s": args.delay_s,
        "in_flight": args.in_flight,
        "batch_size": args.batch_size,
        "host": platform.node(),
        "cpus": __import__("os").cpu_count(),
        "command": "python " + " ".join(sys.argv),
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ray.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Ray on one machine: overhead at equal requests in flight",
        "",
        f"`{result['command']}`; 5 requests a record, server latency {args.delay_s} s/request, "
        f"{args.in_flight} requests in flight in every run; outputs equal record for record: {equal}.",
        "",
        "| records | run | actors x concurrency | wall s | records/s | wall / anchor | extra s | load before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['records_in']} | {r['run']} | {r['actors']} x {r['concurrency_per_actor']} | {r['wall_s']} | "
        f"{r['records_per_s']} | {r['wall_vs_anchor']} | {r['extra_s']} | {r['loadavg_before']} |"
        for r in rows
    ]
    (out_dir / "ray.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if not equal:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
