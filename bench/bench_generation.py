"""Generation throughput of the OpenAI backend against the local xllamacpp server.

For each client concurrency (default 1, 4, 16, 64) a fresh LocalServer is started with
``n_parallel = min(concurrency, --max-slots)`` and the same ``--requests`` prompts are sent through
``OpenAIBackend.generate`` with a fixed ``max_tokens`` (temperature 0). Reported per level:
requests/s, completion tokens/s, p50/p95 per-request latency (queueing included). Then the
server's own single-stream maximum: one long generation, decode and prompt tokens/s as the
server measures them (llama.cpp ``timings``). Writes ``generation.json`` and ``generation.md``.

    python bench/bench_generation.py                # 16 requests x 128 tokens per level; a few minutes on 2 cores
    python bench/bench_generation.py --requests 16 --levels 1 4
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
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)

    from negforge.synth.backends.server import LocalServer, auto_threads

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
