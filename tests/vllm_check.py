"""Checks of the vLLM backend on a real engine, run INSIDE the vLLM environment (see
tests/test_vllm_backend.py, which runs this script with $NEGFORGE_VLLM_PYTHON).

    .venv-vllm/bin/python tests/vllm_check.py --model .cache/negforge/smollm2-hf --out /tmp/vllm-check \
        [--records records.jsonl --generate-config generate.json]

Writes ``report.json`` (measurements and what was checked) to --out and, with --records, the
generation job's output to ``generated.jsonl``. Exits non-zero with the failed check's message.
vLLM spawns processes: everything runs under ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from negforge.synth.params import GenParams  # noqa: E402  (light: pydantic only)

# Three conversations of clearly different lengths, so per-row prompt token counts pin the order.
CONVERSATIONS = [
    [{"role": "user", "content": "Say hello."}],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three colours of the rainbow, separated by commas."},
    ],
    [
        {"role": "system", "content": "You write short factual passages."},
        {
            "role": "user",
            "content": "Write two sentences about how vaccines train the immune system to recognise "
            "a pathogen, and mention antibodies and memory cells.",
        },
    ],
]


# The throughput batch, also sent to the xllamacpp server by tests/test_vllm_backend.py.
BENCH_PARAMS = GenParams(temperature=0.7, max_tokens=128, seed=1, json_mode=False)


def bench_conversations() -> list:
    return [CONVERSATIONS[i % 3] for i in range(8)]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def expected_prompt_tokens(backend, conv) -> int:
    tok = backend._llm.get_tokenizer()
    ids = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return len(ids)


def run_checks(backend, report: dict) -> None:
    greedy = GenParams(temperature=0.0, top_p=1.0, max_tokens=48, seed=0, json_mode=False)

    # 1. One batch: same length, same order, usage counted per row.
    t0 = time.perf_counter()
    rows = backend.generate(CONVERSATIONS, greedy)
    wall = time.perf_counter() - t0
    check(len(rows) == len(CONVERSATIONS), f"{len(rows)} completions for {len(CONVERSATIONS)} conversations")
    check(all(r.ok and r.text.strip() for r in rows), f"a row failed or is empty: {rows}")
    want = [expected_prompt_tokens(backend, c) for c in CONVERSATIONS]
    got = [r.prompt_tokens for r in rows]
    check(got == want, f"per-row prompt tokens {got} != the chat template's token counts {want} (order?)")
    check(all(0 < r.completion_tokens <= 48 for r in rows), f"completion tokens out of range: {rows}")
    u = backend.usage.to_dict()
    check(u["calls"] == 3 and u["requests"] == 3 and u["failed"] == 0, f"usage counts wrong: {u}")
    check(u["prompt_tokens"] == sum(want), f"usage prompt tokens {u['prompt_tokens']} != {sum(want)}")
    check(u["completion_tokens"] == sum(r.completion_tokens for r in rows), f"usage completion tokens wrong: {u}")
    report["batch3"] = {
        "texts": [r.text for r in rows],
        "prompt_tokens": got,
        "completion_tokens": [r.completion_tokens for r in rows],
        "finish_reasons": [r.finish_reason for r in rows],
        "wall_s": round(wall, 3),
        "completion_tokens_per_s": round(sum(r.completion_tokens for r in rows) / wall, 2),
    }

    # 2. The same batch reversed: greedy texts follow their conversations.
    rev = backend.generate(CONVERSATIONS[::-1], greedy)
    report["reversed_matches"] = [a.text == b.text for a, b in zip(rev[::-1], rows)]
    check([r.prompt_tokens for r in rev] == want[::-1], "reversed batch: prompt tokens not in the reversed order")

    # 3. A row longer than max_model_len fails alone; its neighbours still run.
    too_long = [{"role": "user", "content": "word " * 3000}]
    mixed = backend.generate([CONVERSATIONS[0], too_long, CONVERSATIONS[2]], greedy)
    check(len(mixed) == 3, f"{len(mixed)} rows for a batch of 3")
    check(mixed[0].ok and mixed[2].ok, f"good rows next to a bad one failed: {mixed}")
    check(not mixed[1].ok and "context length" in (mixed[1].error or ""), f"too-long row: {mixed[1]}")
    check([mixed[0].prompt_tokens, mixed[2].prompt_tokens] == [want[0], want[2]], "mixed batch: rows out of order")
    report["too_long_error"] = mixed[1].error

    # 4. JSON mode: structured outputs constrain the text to JSON (rows that stopped parse).
    js = backend.generate(CONVERSATIONS, GenParams(temperature=0.0, max_tokens=96, seed=0, json_mode=True))
    stopped = [r for r in js if r.finish_reason == "stop"]
    for r in stopped:
        try:
            json.loads(r.text)
        except ValueError:
            raise AssertionError(f"json_mode row finished with 'stop' but is not JSON: {r.text!r}") from None
    check(all(r.ok and r.text.lstrip().startswith(("{", "[")) for r in js), f"json_mode rows: {js}")
    report["json_mode"] = {"texts": [r.text for r in js], "stopped_and_parsed": len(stopped)}

    # 4b. A JSON schema: every row that stopped is an object with the required key, of the schema's type.
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 120}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    sj = backend.generate(CONVERSATIONS, GenParams(temperature=0.0, max_tokens=96, seed=0, json_schema=schema))
    done = [r for r in sj if r.finish_reason == "stop"]
    check(bool(done), f"json_schema: no row finished within 96 tokens: {sj}")
    for r in done:
        obj = json.loads(r.text)
        check(
            isinstance(obj, dict) and set(obj) == {"answer"} and isinstance(obj["answer"], str),
            f"json_schema row does not follow the schema: {r.text!r}",
        )
    report["json_schema"] = {"texts": [r.text for r in sj], "stopped_and_valid": len(done)}

    # 5. Throughput: a batch of 8 sampled rows, 128 tokens each at most.
    t0 = time.perf_counter()
    out = backend.generate(bench_conversations(), BENCH_PARAMS)
    wall = time.perf_counter() - t0
    toks = sum(r.completion_tokens for r in out)
    check(all(r.ok for r in out), f"bench rows failed: {[r.error for r in out if not r.ok]}")
    report["bench8"] = {
        "completion_tokens": toks,
        "wall_s": round(wall, 3),
        "completion_tokens_per_s": round(toks / wall, 2),
    }


def run_generation(backend, records_path: str, gen_cfg_path: str, out_dir: Path, report: dict) -> None:
    try:
        from negforge.synth.generate import generate_records
    except ImportError as e:
        report["generation"] = f"skipped: negforge.synth.generate is not available ({e})"
        return
    from negforge.synth.config import GenerateConfig
    from negforge.synth.io import read_records, write_records

    records = read_records(records_path)
    cfg = GenerateConfig.model_validate(json.loads(Path(gen_cfg_path).read_text()))
    # Same job as the main environment's, but on this engine (the params stay the file's).
    cfg.llm = cfg.llm.model_copy(update={"backend": "vllm", "model": backend.model, "vllm": backend.cfg.vllm})
    out = out_dir / "generated.jsonl"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    generated, summary = generate_records(records, None, cfg, backend=backend, show_progress=False)
    write_records(out, generated)
    report["generation"] = {
        "records": len(read_records(out)),
        "wall_s": round(time.perf_counter() - t0, 2),
        "summary": summary.to_dict(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--out", required=True, help="folder for report.json (and generated.jsonl)")
    ap.add_argument("--records", help="records JSONL for the generation job")
    ap.add_argument("--generate-config", help="GenerateConfig JSON (its llm section is replaced)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from negforge.synth.backends.vllm_backend import VLLMBackend
    from negforge.synth.config import LLMConfig

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    cfg = LLMConfig(
        backend="vllm",
        model=args.model,
        n_ctx=2048,
        params=GenParams(max_tokens=256, seed=0, temperature=0.7),
        vllm={"dtype": "bfloat16", "max_model_len": 2048, "enforce_eager": True},
    )
    t0 = time.perf_counter()
    backend = VLLMBackend(cfg)
    report["load_s"] = round(time.perf_counter() - t0, 2)
    try:
        run_checks(backend, report)
        if args.records and args.generate_config:
            run_generation(backend, args.records, args.generate_config, out_dir, report)
        report["usage"] = backend.usage.to_dict()
        report["ok"] = True
    except AssertionError as e:
        report["ok"], report["error"] = False, str(e)
    finally:
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        backend.close()
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
