"""Generation throughput of the OpenAI backend against the local xllamacpp server.

For each client concurrency (default 1, 4, 16, 64) a fresh LocalServer is started with
``n_parallel = min(concurrency, --max-slots)`` and the same ``--requests`` prompts are sent through
``OpenAIBackend.generate`` with a fixed ``max_tokens`` (temperature 0). Reported per level:
requests/s, completion tokens/s, p50/p95 per-request latency (queueing included). Then the
server's own single-stream maximum: one long generation, decode and prompt tokens/s as the
server measures them (llama.cpp ``timings``). Writes ``generation.json`` and ``generation.md``.

    python bench/bench_generation.py                # 16 requests x 128 tokens per level; a few minutes on 2 cores
    python bench/bench_generation.py --requests 16 --levels 1 4

``--stage`` (issue 17, prefix reuse) measures instead, in one run on ONE server: the raw ceiling (completion
tok/s with every slot busy, the raw openai client) and the real LLM stage (``generate_records``: the same
records, the same template set, the same seed, no on-disk cache) lock-step (before) and as one chain of calls
per record (after); also the set as it was before the shared prefix (``--before-commit``), lock-step. Reported:
stage completion tok/s / ceiling, and prompt tokens sent / computed (the server's ``cached_tokens``) per draft.
Between arms every slot's cached prompt is overwritten (unrelated requests), so no arm reuses another's.
Writes ``generation_prefix.json`` and ``generation_prefix.md``.

    python bench/bench_generation.py --stage --data ../shared/data/scifact --records 12 --slots 4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = [
    "caffeine and memory",
    "vitamin D and influenza",
    "aspirin and stroke",
    "exercise and anxiety",
    "statins and muscle pain",
    "sleep and obesity",
    "smoking and lung cancer",
    "probiotics and diarrhoea",
]


def prompts(n: int) -> list[list[dict]]:
    return [
        [
            {"role": "system", "content": "You are a science writer."},
            {
                "role": "user",
                "content": f"Write a detailed abstract of a study on {TOPICS[i % len(TOPICS)]} "
                f"(study {i}). Use at least 200 words.",
            },
        ]
        for i in range(n)
    ]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def run_level(concurrency: int, args: argparse.Namespace) -> dict:
    from negforge.synth.backends.openai_backend import OpenAIBackend
    from negforge.synth.backends.server import LocalServer
    from negforge.synth.config import LLMConfig
    from negforge.synth.params import GenParams

    slots = min(concurrency, args.max_slots)
    params = GenParams(max_tokens=args.max_tokens, temperature=0.0, seed=0, json_mode=False)
    with LocalServer(n_ctx=args.n_ctx, n_parallel=slots, threads=args.threads) as srv:
        cfg = LLMConfig(base_url=srv.base_url, concurrency=concurrency, timeout_s=900, max_retries=0)
        with OpenAIBackend(cfg) as b:
            b.generate(prompts(1), params.model_copy(update={"max_tokens": 4}))  # warm-up, not counted
            before = b.usage.snapshot()
            t0 = time.perf_counter()
            out = b.generate(prompts(args.requests), params)
            wall = time.perf_counter() - t0
            u, lat = b.usage.since(before), list(b.last_latencies_s)
    return {
        "concurrency": concurrency,
        "n_parallel": slots,
        "requests": len(out),
        "failed": u.failed,
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(out) / wall, 3),
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "completion_tokens_per_s": round(u.completion_tokens / wall, 1),
        "p50_latency_s": round(statistics.median(lat), 2),
        "p95_latency_s": round(pct(lat, 0.95), 2),
    }


def server_max(args: argparse.Namespace) -> dict:
    """One long generation on a one-slot server; speeds as llama.cpp measures them."""
    import openai

    from negforge.synth.backends.server import LocalServer

    with LocalServer(n_ctx=args.n_ctx, n_parallel=1, threads=args.threads) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local", max_retries=0, timeout=900)
        client.chat.completions.create(model="local", messages=prompts(1)[0], max_tokens=4)  # warm-up
        t0 = time.perf_counter()
        r = client.chat.completions.create(
            model="local", messages=prompts(1)[0], max_tokens=args.long_tokens, temperature=0.0, seed=0
        )
        wall = time.perf_counter() - t0
        client.close()
    timings = (r.model_extra or {}).get("timings") or {}
    return {
        "max_tokens": args.long_tokens,
        "completion_tokens": r.usage.completion_tokens,
        "wall_s": round(wall, 2),
        "client_completion_tokens_per_s": round(r.usage.completion_tokens / wall, 1),
        "server_decode_tokens_per_s": round(timings.get("predicted_per_second", 0.0), 1),
        "server_prompt_tokens_per_s": round(timings.get("prompt_per_second", 0.0), 1),
    }


def raw_client_max(args: argparse.Namespace) -> dict:
    """The server's own aggregate ceiling: the raw synchronous openai client from ``max_slots`` threads
    against a server with ``max_slots`` slots, the same requests as each level (no negforge code)."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    from negforge.synth.backends.server import LocalServer

    slots = args.max_slots
    with LocalServer(n_ctx=args.n_ctx, n_parallel=slots, threads=args.threads) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local", max_retries=0, timeout=900)
        client.chat.completions.create(model="local", messages=prompts(1)[0], max_tokens=4)  # warm-up

        def one(conv: list[dict]) -> int:
            r = client.chat.completions.create(
                model="local", messages=conv, max_tokens=args.max_tokens, temperature=0.0, seed=0
            )
            return r.usage.completion_tokens

        t0 = time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            tokens = list(pool.map(one, prompts(args.requests)))
        wall = time.perf_counter() - t0
        client.close()
    return {
        "n_parallel": slots,
        "threads": slots,
        "requests": len(tokens),
        "completion_tokens": sum(tokens),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(tokens) / wall, 3),
        "completion_tokens_per_s": round(sum(tokens) / wall, 1),
    }


def _before_set(commit: str, dest: Path) -> Optional[Path]:
    """The built-in mar set as it was at ``commit`` (before the shared prefix), in ``dest``; None without git."""
    import subprocess

    folder = dest / "mar_before"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("analyse.jinja2", "generate.jinja2", "reflect.jinja2", "space.yaml"):
        r = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:negforge/prompts/sets/mar/{name}"], capture_output=True
        )
        if r.returncode:
            return None
        (folder / name).write_bytes(r.stdout)
    return folder


def stage_arm(name: str, records: list, base_url: str, args: argparse.Namespace, template: str, schedule: str) -> dict:
    """The real LLM stage over ``records`` against the running server, no on-disk cache."""
    from negforge.synth.config import GenerateConfig, LLMConfig, ProfileConfig
    from negforge.synth.generate import generate_records
    from negforge.synth.params import GenParams

    cfg = GenerateConfig(
        template=template,
        schedule=schedule,
        batch_size=len(records),  # one batch: no batch barrier in either arm
        cache_dir=None,
        seed=0,
        profile=ProfileConfig(corpus=str(args.data), describe_with_llm=False),
        llm=LLMConfig(
            backend="openai",
            base_url=base_url,
            model="SmolLM2-135M-Instruct",
            concurrency=args.slots,
            timeout_s=900,
            max_retries=1,
            params=GenParams(max_tokens=args.stage_max_tokens, temperature=0.7, seed=0),
        ),
    )
    t0 = time.perf_counter()
    done, rep = generate_records(records, None, cfg, show_progress=False)
    wall = time.perf_counter() - t0
    u, drafts = rep.usage, max(1, rep.drafts)
    return {
        "arm": name,
        "template": Path(template).name,
        "schedule": schedule,
        "records_done": rep.records_done,
        "records_failed": rep.records_failed,
        "drafts": rep.drafts,
        "kept": rep.status.get("kept", 0),
        "calls": u["calls"],
        "wall_s": round(wall, 1),
        "completion_tokens": u["completion_tokens"],
        "completion_tokens_per_s": round(u["completion_tokens"] / wall, 1),
        "prompt_tokens_sent": u["prompt_tokens"],
        "prompt_tokens_computed": u["prompt_tokens_computed"],
        "prompt_tokens_sent_per_draft": round(u["prompt_tokens"] / drafts, 1),
        "prompt_tokens_computed_per_draft": round(u["prompt_tokens_computed"] / drafts, 1),
    }


def ceiling(base_url: str, args: argparse.Namespace) -> dict:
    """Completion tok/s with every slot busy: the raw openai client from ``slots`` threads, no negforge code."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    client = openai.OpenAI(base_url=base_url, api_key="local", max_retries=0, timeout=900)
    client.chat.completions.create(model="local", messages=prompts(1)[0], max_tokens=4)  # warm-up

    def one(conv: list[dict]) -> int:
        r = client.chat.completions.create(
            model="local", messages=conv, max_tokens=args.max_tokens, temperature=0.0, seed=0
        )
        return r.usage.completion_tokens

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.slots) as pool:
        tokens = list(pool.map(one, prompts(args.requests)))
    wall = time.perf_counter() - t0
    client.close()
    return {
        "requests": len(tokens),
        "completion_tokens": sum(tokens),
        "wall_s": round(wall, 1),
        "completion_tokens_per_s": round(sum(tokens) / wall, 1),
    }


def stage_bench(args: argparse.Namespace) -> dict:
    """Per arm, a fresh server with the same settings (llama.cpp also keeps prompts in host RAM, so one arm
    would reuse another's prompts on a shared server): the ceiling on it, then the stage arm on it."""
    import tempfile

    from negforge.synth.backends.server import LocalServer
    from negforge.synth.data import load_beir, records_from_beir

    records = records_from_beir(load_beir(args.data, "test"), args.records)
    out: dict = {"records": len(records), "slots": args.slots, "arms": []}
    with tempfile.TemporaryDirectory() as tmp:
        before = _before_set(args.before_commit, Path(tmp)) if args.before_commit else None
        arms = [
            ("after: shared prefix, chain per record", "mar", "per_record"),
            ("shared prefix, lock-step", "mar", "lockstep"),
        ]
        if before is not None:
            arms.append((f"before: set of {args.before_commit}, lock-step", str(before), "lockstep"))
        for name, template, schedule in arms:
            with LocalServer(n_ctx=args.n_ctx, n_parallel=args.slots, threads=args.threads) as srv:
                top = ceiling(srv.base_url, args)
                arm = stage_arm(name, records, srv.base_url, args, template, schedule)
            arm["ceiling_completion_tokens_per_s"] = top["completion_tokens_per_s"]
            arm["ratio_to_ceiling"] = round(arm["completion_tokens_per_s"] / top["completion_tokens_per_s"], 3)
            out["arms"].append(arm)
            print(json.dumps(arm), flush=True)
    return out


def stage_markdown(result: dict, command: str) -> str:
    m, arms = result["machine"], result["arms"]
    after = arms[0]
    base = arms[-1]  # the oldest arm run: the set before the shared prefix when there is one
    fewer = base["prompt_tokens_computed_per_draft"] / max(1e-9, after["prompt_tokens_computed_per_draft"])
    lines = [
        f"# Generation stage vs the server ceiling, prefix reuse ({result['model']}, local xllamacpp server)",
        "",
        f"`{command}`",
        "",
        f"{m['cpus']} CPU cores, server threads {m['server_threads']}, {result['slots']} slots (llm.concurrency "
        f"{result['slots']}); `uptime` before: {m['uptime_before']}; after: {m['uptime_after']} (the machine is "
        f"shared). {result['records']} SciFact test records, num_negatives 2, reflection_rounds 1, temperature 0.7, "
        f"seed 0, max_tokens {result['stage_max_tokens']}, no on-disk LLM cache, one batch. Each arm on a fresh server "
        f"with the same settings (n_ctx {result['n_ctx']} per slot), its ceiling measured on that server just before "
        f"(raw openai client, {result['slots']} threads, {result['requests']} requests x {result['max_tokens']} tokens).",
        "",
        "| arm | set | schedule | records | drafts | calls | wall s | ceiling tok/s | completion tok/s | / ceiling | "
        "prompt tok sent / draft | prompt tok computed / draft |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {a['arm']} | {a['template']} | {a['schedule']} | {a['records_done']} | {a['drafts']} | {a['calls']} | "
        f"{a['wall_s']} | {a['ceiling_completion_tokens_per_s']} | {a['completion_tokens_per_s']} | {a['ratio_to_ceiling']:.0%} | "
        f"{a['prompt_tokens_sent_per_draft']} | {a['prompt_tokens_computed_per_draft']} |"
        for a in arms
    ]
    met_ratio, met_fewer = after["ratio_to_ceiling"] >= 0.8, fewer >= 2.5
    lines += [
        "",
        f"Goal 1 (stage >= 80% of the ceiling): {after['ratio_to_ceiling']:.0%}: **{'met' if met_ratio else 'not met'}**.",
        f"Goal 2 (>= 2.5x fewer prompt tokens computed per draft than before): {fewer:.2f}x "
        f"({base['arm']} -> {after['arm']}): **{'met' if met_fewer else 'not met'}**.",
        "",
    ]
    result["goals"] = {"ratio_to_ceiling": after["ratio_to_ceiling"], "fewer_computed_x": round(fewer, 2)}
    return "\n".join(lines)


def markdown(result: dict) -> str:
    m, rows = result["machine"], result["levels"]
    lines = [
        f"# Generation throughput: OpenAI backend -> local xllamacpp server ({result['model']})",
        "",
        f"{m['cpus']} CPU cores ({m['platform']}), server threads {m['server_threads']}, "
        f"load average {m['load_before']} before / {m['load_after']} after (the machine is shared). "
        f"{result['requests']} requests per level, max_tokens={result['max_tokens']}, temperature 0; "
        f"n_parallel = min(concurrency, {result['max_slots']}).",
        "",
        "| concurrency | n_parallel | requests/s | completion tok/s | p50 latency s | p95 latency s | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['concurrency']} | {r['n_parallel']} | {r['requests_per_s']} | {r['completion_tokens_per_s']} | "
        f"{r['p50_latency_s']} | {r['p95_latency_s']} | {r['failed']} |"
        for r in rows
    ]
    s, raw = result["server_max"], result["raw_client"]
    best = max(rows, key=lambda r: r["completion_tokens_per_s"])
    lines += [
        f"| raw openai client, {raw['threads']} threads | {raw['n_parallel']} | {raw['requests_per_s']} | "
        f"{raw['completion_tokens_per_s']} | - | - | - |"
    ]
    lines += [
        "",
        f"Concurrency above the number of requests ({result['requests']}) puts every request in flight at "
        "once. The raw-client row is the server's own aggregate ceiling (the synchronous openai client from "
        "one thread per slot, no negforge code).",
        f"Server single-stream maximum ({s['completion_tokens']} tokens in one request): "
        f"{s['server_decode_tokens_per_s']} decode tok/s and {s['server_prompt_tokens_per_s']} prompt tok/s "
        f"as the server measures them; {s['client_completion_tokens_per_s']} tok/s seen by the client.",
        f"Best parallel setting: concurrency {best['concurrency']} (n_parallel {best['n_parallel']}), "
        f"{best['completion_tokens_per_s']} completion tok/s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--requests", type=int, default=16, help="requests per level (the same prompts each time)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--long-tokens", type=int, default=256, help="tokens of the single long generation")
    ap.add_argument("--max-slots", type=int, default=16, help="server n_parallel = min(concurrency, this)")
    ap.add_argument("--n-ctx", type=int, default=1024, help="context per slot")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="server threads for every level (default: the cores idle at the start, chosen once)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--stage", action="store_true", help="the ceiling vs the LLM stage, before / after prefix reuse")
    ap.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact", help="--stage: BEIR folder"
    )
    ap.add_argument("--records", type=int, default=12, help="--stage: records (test split)")
    ap.add_argument("--slots", type=int, default=4, help="--stage: server slots = llm.concurrency")
    ap.add_argument("--stage-max-tokens", type=int, default=200, help="--stage: llm.params.max_tokens")
    ap.add_argument("--arms", type=int, nargs="*", default=None, help="--stage: only these arms (0 after, 1, 2 before)")
    ap.add_argument("--before-commit", default="a0f1014", help="--stage: the commit of the set before the prefix")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)

    from negforge.synth.backends.server import LocalServer, auto_threads

    if args.stage:
        import subprocess

        uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: E731
        up0 = uptime()
        args.threads = args.threads or auto_threads()
        t0 = time.perf_counter()
        result = stage_bench(args)
        result.update(
            model=Path(LocalServer().gguf).name,
            max_tokens=args.max_tokens,
            stage_max_tokens=args.stage_max_tokens,
            n_ctx=args.n_ctx,
            requests=args.requests,
            machine={
                "cpus": os.cpu_count(),
                "server_threads": args.threads,
                "uptime_before": up0,
                "uptime_after": uptime(),
            },
            total_wall_s=round(time.perf_counter() - t0, 1),
        )
        command = "python bench/bench_generation.py " + " ".join(sys.argv[1:])
        md = stage_markdown(result, command)
        result["command"] = command
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "generation_prefix.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "generation_prefix.md").write_text(md)
        print(md)
        return

    load_before = round(os.getloadavg()[0], 2)
    args.threads = args.threads or auto_threads()  # one choice for all levels, so they compare
    t0 = time.perf_counter()
    levels = []
    for c in args.levels:
        levels.append(run_level(c, args))
        r = levels[-1]
        print(
            f"concurrency {c:>3}: {r['requests_per_s']} req/s, {r['completion_tokens_per_s']} tok/s, "
            f"p50 {r['p50_latency_s']} s, p95 {r['p95_latency_s']} s",
            flush=True,
        )
    raw = raw_client_max(args)
    print(
        f"raw client x{raw['threads']}: {raw['requests_per_s']} req/s, {raw['completion_tokens_per_s']} tok/s",
        flush=True,
    )
    smax = server_max(args)
    result = {
        "model": Path(LocalServer().gguf).name,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "max_slots": args.max_slots,
        "levels": levels,
        "raw_client": raw,
        "server_max": smax,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.machine(),
            "server_threads": args.threads,
            "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2),
        },
        "total_wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generation.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / "generation.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
