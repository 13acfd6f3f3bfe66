"""The offline vLLM backend.

The pure parts (GenParams -> SamplingParams keywords, engine keywords, RequestOutput -> Completion,
the missing-dependency advice) run here in the main environment, without vLLM. The real engine runs
in the separate vLLM environment (``bash scripts/setup_vllm_cpu.sh``; its python in
``$NEGFORGE_VLLM_PYTHON``; unset, the real test skips): ``tests/vllm_check.py`` checks a real
batch there and runs the generation job, and this test runs the same job with the OpenAI backend on
the local xllamacpp server and compares the two outputs' shape.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from negforge.synth.backends import BACKENDS
from negforge.synth.backends.vllm_backend import (
    VLLMBackend,
    _check_engine_keys,
    engine_kwargs,
    resolve_model,
    sampling_kwargs,
    to_completion,
)
from negforge.synth.config import GenerateConfig, LLMConfig
from negforge.synth.errors import BackendError, ConfigError, MissingDependencyError
from negforge.synth.params import GenParams

ROOT = Path(__file__).resolve().parents[1]
SETUP = "bash scripts/setup_vllm_cpu.sh && export NEGFORGE_VLLM_PYTHON=$PWD/.venv-vllm/bin/python"
CHECK_TIMEOUT_S = 900


# -- pure parts, main environment ----------------------------------------------------------------
def test_sampling_kwargs_maps_every_param_in_one_place():
    kw = sampling_kwargs(GenParams(temperature=0.3, top_p=0.9, max_tokens=7, seed=None, stop=["\n\n"], json_mode=True))
    assert kw == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 7,
        "n": 1,
        "stop": ["\n\n"],
        "structured_outputs": {"json_object": True},
    }
    # max_tokens is always there (vLLM's own default is 16); json_mode can be switched off per call.
    assert sampling_kwargs(GenParams(seed=5, json_mode=False)) == {
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 512,
        "n": 1,
        "seed": 5,
    }
    assert "structured_outputs" not in sampling_kwargs(GenParams(json_mode=True), json_mode=False)
    # A step's JSON schema becomes the constraint; without it (or once refused) any JSON object.
    schema = {"type": "object", "properties": {"passage": {"type": "string"}}, "required": ["passage"]}
    assert sampling_kwargs(GenParams(json_schema=schema))["structured_outputs"] == {"json": schema}
    assert sampling_kwargs(GenParams(json_schema=schema), use_schema=False)["structured_outputs"] == {
        "json_object": True
    }
    assert "structured_outputs" not in sampling_kwargs(GenParams(json_schema=schema, json_mode=False))


def test_engine_kwargs_and_their_validation(tmp_path):
    cfg = LLMConfig(
        backend="vllm",
        model=str(tmp_path),
        n_ctx=1024,
        vllm={"dtype": "bfloat16", "enforce_eager": True, "tensor_parallel_size": 2},
    )
    assert engine_kwargs(cfg) == {
        "model": str(tmp_path),
        "max_model_len": 1024,
        "dtype": "bfloat16",
        "enforce_eager": True,
        "tensor_parallel_size": 2,
    }
    assert engine_kwargs(cfg.model_copy(update={"vllm": {"max_model_len": 2048}}))["max_model_len"] == 2048
    with pytest.raises(ConfigError, match="llm.model"):
        engine_kwargs(cfg.model_copy(update={"vllm": {"model": "x"}}))

    class FakeLLM:  # the shape of vllm.LLM / EngineArgs: named keywords plus a dataclass of engine fields
        def __init__(self, model, *, dtype="auto", tensor_parallel_size=1, **kwargs):
            pass

    @dataclasses.dataclass
    class FakeEngineArgs:
        enforce_eager: bool = False
        max_model_len: int = 0

    _check_engine_keys({"dtype": "bfloat16", "enforce_eager": True, "max_model_len": 9}, FakeLLM, FakeEngineArgs)
    with pytest.raises(ConfigError, match="llm.vllm.enforce_eagr .*did you mean enforce_eager"):
        _check_engine_keys({"enforce_eagr": True}, FakeLLM, FakeEngineArgs)


def test_default_model_needs_the_converted_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("NEGFORGE_VLLM_MODEL", str(tmp_path / "missing"))
    with pytest.raises(BackendError, match="setup_vllm_cpu.sh"):
        resolve_model(LLMConfig().model)
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "config.json").write_text("{}")
    assert resolve_model(LLMConfig().model) == str(tmp_path / "missing")
    assert resolve_model("org/some-hub-model") == "org/some-hub-model"


def test_request_output_to_completion():
    def out(text, ids, finish, prompt=5):
        return SimpleNamespace(
            prompt_token_ids=list(range(prompt)),
            outputs=[SimpleNamespace(text=text, token_ids=ids, finish_reason=finish)],
        )

    c = to_completion(out('{"a": 1}', [7, 8, 9], "stop"))
    assert (c.ok, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) == (True, '{"a": 1}', 5, 3, "stop")
    assert to_completion(out("cut", [1] * 4, "length")).finish_reason == "length"
    aborted = to_completion(out("", [], "abort"))
    assert not aborted.ok and "abort" in aborted.error
    empty = to_completion(SimpleNamespace(prompt_token_ids=[1, 2], outputs=[]))
    assert not empty.ok and empty.prompt_tokens == 2


def test_without_vllm_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    assert BACKENDS.get("vllm") is VLLMBackend
    with pytest.raises(MissingDependencyError) as e:
        VLLMBackend(LLMConfig(backend="vllm"))
    assert "pip install vllm" in str(e.value) and "setup_vllm_cpu.sh" in str(e.value)


def test_importing_the_backend_does_not_import_vllm_or_torch():
    code = "import sys, negforge.synth.backends.vllm_backend; print(sorted({'vllm', 'torch'} & set(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


# -- the real engine, in the vLLM environment -----------------------------------------------------
def vllm_python() -> Path | None:
    """$NEGFORGE_VLLM_PYTHON, or None (the real test then skips). Set but missing is an error:
    whoever set it meant the test to run."""
    env = os.environ.get("NEGFORGE_VLLM_PYTHON")
    if not env:
        return None
    if not Path(env).is_file():
        pytest.fail(f"NEGFORGE_VLLM_PYTHON={env} does not exist; run: {SETUP}")
    return Path(env)


N_RECORDS = 2


def job_config() -> GenerateConfig:
    """The same small job for both backends: 2 records x 2 drafts, one reflection round, one re-ask,
    160 tokens a reply, greedy (each engine's replies as stable as they get); each step's JSON schema
    constrains decoding on both engines."""
    params = GenParams(temperature=0.0, top_p=1.0, max_tokens=160, seed=0)
    return GenerateConfig(
        llm=LLMConfig(params=params, n_ctx=2048),
        num_negatives=2,
        reflection_rounds=1,
        max_reasks=1,
        cache_dir=None,
        batch_size=8,
    )


def record_shape(path: Path) -> dict:
    """What must agree between backends for every record: ids in input order, record keys, meta keys,
    the analysis keys, and that the input positives passed through."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        "ids": [r["id"] for r in recs],
        "record_keys": sorted({k for r in recs for k in r}),
        "meta_keys": sorted({k for r in recs for k in r["meta"]}),
        "positives": [[p["text"] for p in r["positives"]] for r in recs],
        "analysis_is_dict": all(isinstance(r["meta"].get("llm_analysis"), dict) for r in recs),
    }


def negative_shape(path: Path) -> dict:
    """For the LLM negatives: keys, source, which provenance fields are filled and the keys inside
    them, template and hash (texts and values differ between engines, of course)."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    negs = [n for r in recs for n in r["negatives"]]
    prov = [n["provenance"] for n in negs]
    return {
        "negative_keys": sorted({k for n in negs for k in n}),
        "sources": sorted({n["source"] for n in negs}),
        "provenance_filled": sorted(
            {k for p in prov for k, v in p.items() if v not in (None, {}, [], "") and k != "rounds"}
        ),
        "attribute_keys": sorted({k for p in prov for k in p["attributes"]}),
        "extra_keys": sorted({k for p in prov for k in p["extra"]}),
        "template": sorted({(p["template"], p["template_hash"], p["seed"]) for p in prov}),
        "models_filled": all(p["model"] for p in prov),
    }


def run_vllm_check(py: Path, model: Path, tmp_path: Path) -> tuple[dict, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "vllm"
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            [
                str(py),
                str(ROOT / "tests" / "vllm_check.py"),
                "--model",
                str(model),
                "--out",
                str(out),
                "--records",
                str(tmp_path / "records.jsonl"),
                "--generate-config",
                str(tmp_path / "generate.json"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"vllm_check ran past {CHECK_TIMEOUT_S} s\n{(e.stderr or b'')[-4000:]!r}")
    wall = time.perf_counter() - t0
    report_file = out / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    assert res.returncode == 0 and report.get("ok"), (
        f"vllm_check failed ({res.returncode}): {report.get('error')}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    )
    return report, wall


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_engine_batch_and_generation_job_match_the_openai_backend(tiny_beir, tmp_path, request):
    py = vllm_python()
    if py is None:
        pytest.skip(f"NEGFORGE_VLLM_PYTHON is not set (the vLLM environment is separate); to run this: {SETUP}")
    model = Path(os.environ.get("NEGFORGE_VLLM_MODEL", ROOT / ".cache" / "negforge" / "smollm2-hf"))
    if not (model / "config.json").is_file():
        pytest.fail(
            f"NEGFORGE_VLLM_PYTHON is set but there is no converted model at {model}; run: "
            "bash scripts/setup_vllm_cpu.sh (or set NEGFORGE_VLLM_MODEL)"
        )
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.synth.io import write_records

    records = records_from_beir(load_beir(tiny_beir, "train"), limit=N_RECORDS)
    write_records(tmp_path / "records.jsonl", records)
    cfg = job_config()
    (tmp_path / "generate.json").write_text(cfg.model_dump_json())

    # 1. The real engine in the vLLM environment: the batch checks of tests/vllm_check.py, then the job.
    report, wall = run_vllm_check(py, model, tmp_path)
    assert report["batch3"]["completion_tokens_per_s"] > 0 and report["usage"]["failed"] == 1  # the too-long row
    gen = report["generation"]
    assert isinstance(gen, dict), gen  # a string says why the job could not run there
    assert gen["records"] == N_RECORDS and gen["summary"]["records_done"] == N_RECORDS
    assert gen["summary"]["drafts"] == N_RECORDS * cfg.num_negatives
    assert gen["summary"]["usage"]["calls"] > 0 and gen["summary"]["usage"]["completion_tokens"] > 0

    # 2. The same job through the OpenAI backend on the local xllamacpp server, and the same bench batch.
    from negforge.synth.backends.openai_backend import OpenAIBackend
    from negforge.synth.generate import generate_records

    sys.path.insert(0, str(ROOT / "tests"))
    from vllm_check import BENCH_PARAMS, bench_conversations

    srv = request.getfixturevalue("local_server")
    with OpenAIBackend(cfg.llm, srv.base_url) as backend:
        generated, summary = generate_records(records, None, cfg, backend=backend, show_progress=False)
        write_records(tmp_path / "openai.jsonl", generated)
        t0 = time.perf_counter()
        bench = backend.generate(bench_conversations(), BENCH_PARAMS)
        bench_wall = time.perf_counter() - t0
    bench_tokens = sum(c.completion_tokens for c in bench)
    print(
        f"\nvLLM check in {wall:.0f} s: engine load {report['load_s']} s; batch of 8 (128 tokens max, sampled): "
        f"vLLM-cpu {report['bench8']['completion_tokens_per_s']} tok/s, xllamacpp "
        f"{bench_tokens / bench_wall:.1f} tok/s ({srv.n_parallel} slots); job: vLLM {gen['summary']['wall_s']} s, "
        f"xllamacpp {summary.wall_s:.1f} s\n  vLLM job: {gen['summary']}\n  OpenAI job: {summary.to_dict()}"
    )
    assert summary.records_done == N_RECORDS and summary.drafts == gen["summary"]["drafts"]

    # 3. Same shape. Negatives are compared where both engines kept or dropped any: the 135M model
    # often writes nothing parseable, and which drafts survive differs between the engines.
    assert record_shape(tmp_path / "vllm" / "generated.jsonl") == record_shape(tmp_path / "openai.jsonl")
    a, b = negative_shape(tmp_path / "vllm" / "generated.jsonl"), negative_shape(tmp_path / "openai.jsonl")
    if a["sources"] and b["sources"]:
        assert a["sources"] == b["sources"] == ["llm"]
        assert a == b
    else:
        print(
            f"  negatives not compared: vLLM kept {len(a['sources']) and 'some' or 'none'}, "
            f"xllamacpp kept {len(b['sources']) and 'some' or 'none'}"
        )
    assert set(gen["summary"]) == set(summary.to_dict())
