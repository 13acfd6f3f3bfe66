"""``negforge generate --ray``: the job on a local Ray cluster (2 CPUs, two actors) equals the single-process
job record for record (the bundled SmolLM2 on the local xllamacpp server); a driver killed with SIGKILL
mid-way resumes with no loss and no duplicate (two OpenAI-compatible servers, one per actor); a row whose
LLM work failed comes back marked failed, the others done; the actor's rows and a batch that raises (no
cluster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="negforge[ray] is not installed")

from fault_server import FaultServer, mar_reply  # noqa: E402
from test_generate import rec, write_cfg  # noqa: E402

from negforge.synth.config import GenerateConfig, LLMConfig, ProfileConfig, RayConfig, load_config  # noqa: E402
from negforge.synth.io import read_records, write_records  # noqa: E402
from negforge.synth.job import run_generate_job  # noqa: E402
from negforge.synth.params import GenParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RAY = {"enabled": True, "num_cpus": 2, "actors": 2, "cpus_per_actor": 0.5}


@pytest.mark.slow
def test_ray_job_equals_the_single_process_job(tiny_beir, local_server, tmp_path):
    """The Ray job calls the real server (fresh cache); the single-process job on the same cache then makes
    no server call at all (the actors sent exactly the prompts one process sends) and writes the same records."""
    from negforge.synth.data import load_beir, records_from_beir

    records = records_from_beir(load_beir(tiny_beir, "train"), 4)
    base = dict(
        num_negatives=1,
        reflection_rounds=1,
        max_prompt_words=60,
        seed=5,
        batch_size=2,
        cache_dir=str(tmp_path / "cache"),
        profile=ProfileConfig(corpus=str(tiny_beir), describe_with_llm=True),
        llm=LLMConfig(
            base_url=local_server.base_url,
            model="SmolLM2-135M-Instruct",
            concurrency=2,
            timeout_s=900,
            params=GenParams(max_tokens=120, temperature=0.0, seed=0),
        ),
    )
    on_ray = run_generate_job(
        records, GenerateConfig(**base, ray=RayConfig(**RAY)), tmp_path / "ray.jsonl", show_progress=False
    )
    assert on_ray.records_done == 4 and on_ray.records_failed == 0
    assert on_ray.usage["calls"] >= 9 and on_ray.usage["cached"] == 0 and on_ray.usage["completion_tokens"] > 0
    single = run_generate_job(records, GenerateConfig(**base), tmp_path / "one.jsonl", show_progress=False)
    # no server call: every prompt is one the actors sent; the corpus profile (the LLM's description, counted
    # in the Ray job's usage) is read from the cache folder, so one call fewer
    assert single.usage["cached"] == single.usage["calls"] == on_ray.usage["calls"] - 1
    got, want = read_records(tmp_path / "ray.jsonl"), read_records(tmp_path / "one.jsonl")
    assert [r.id for r in want] == [r.id for r in records]
    assert sorted(r.id for r in got) == sorted(r.id for r in records)  # no loss, no duplicate
    assert {r.id: r for r in got} == {r.id: r for r in want}  # record for record: analysis, drafts, provenance
    for k in ("drafts", "status", "reasons", "reasks", "revisions", "repaired", "analysis_failed"):
        assert getattr(on_ray, k) == getattr(single, k), k
    # the corpus profile (the LLM's description included) is the one job-wide profile, not one per actor
    profiles = {json.dumps(n.provenance.extra["profile"]) for r in got for n in r.negatives}
    assert len(profiles) <= 1


@pytest.mark.slow
def test_killed_ray_driver_resumes_with_no_loss_and_no_duplicate(tmp_path):
    records = [rec(i) for i in range(8)]
    src = tmp_path / "in.jsonl"
    write_records(src, records)
    with FaultServer(reply_fn=mar_reply, delay_s=0.4) as s1, FaultServer(reply_fn=mar_reply, delay_s=0.4) as s2:
        conf = write_cfg(
            tmp_path / "gen.yaml",
            s1.base_url,
            batch_size=1,
            cache_dir=str(tmp_path / "cache"),
            profile={"describe_with_llm": False},
            ray={**RAY, "enabled": False, "base_urls": [s1.base_url, s2.base_url]},
        )
        ref = tmp_path / "ref.jsonl"
        # the reference does not fill the Ray job's cache
        one = load_config(GenerateConfig, conf).model_copy(update={"cache_dir": None})
        run_generate_job(records, one, ref, show_progress=False)
        s1.requests.clear()
        out = tmp_path / "out.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "negforge.synth.cli",
            "generate",
            str(conf),
            "--input",
            str(src),
            "--output",
            str(out),
            "--ray",
            "-q",
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and proc.poll() is None:
                if out.exists() and out.read_text().count("\n") >= 2:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the job finished before it could be killed: " + proc.stdout.read().decode()
            proc.send_signal(signal.SIGKILL)  # the driver only
            proc.wait()
        finally:
            time.sleep(1)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # what is left of the local cluster it started
            except ProcessLookupError:
                pass
        partial = read_records(out)
        assert 2 <= len(partial) < len(records)
        assert Path(f"{out}.lock").exists()  # the dead driver's lock: taken over by the rerun
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert s1.requests and s2.requests  # the two actors spread over the two servers
    lines = out.read_text().splitlines()
    ids = [json.loads(x)["id"] for x in lines]
    assert len(ids) == len(set(ids)) == 8  # no duplicate line, no lost record
    assert {r.id: r for r in read_records(out)} == {r.id: r for r in read_records(ref)}
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    last = summary["runs"][-1]
    assert last["records_skipped"] == len(partial) and last["records_done"] == 8 - len(partial)
    assert summary["records_in_output"] == 8 and summary["records_failed"] == 0 and last["outcome"] == "ok"
    assert [r["outcome"] for r in summary["runs"]] == ["running", "ok"]
    assert not Path(f"{out}.lock").exists() and not Path(f"{out}.failures.jsonl").exists()


@pytest.mark.slow
def test_a_failed_row_comes_back_marked_failed(tmp_path):
    """q1's analyse call fails at the server (500, no retries): q1 is listed failed with its step and error,
    the other rows of its batch and of the job are done."""
    plan = {"[r1]": ["500"] * 4}
    records = [rec(i) for i in range(4)]
    with FaultServer(plan, reply_fn=mar_reply) as srv:
        c = GenerateConfig(
            num_negatives=1,
            seed=3,
            cache_dir=None,
            batch_size=2,
            max_failed_fraction=0.5,
            profile=ProfileConfig(describe_with_llm=False),
            ray=RayConfig(**RAY),
            llm=LLMConfig(
                base_url=srv.base_url,
                model="fault-mar",
                max_retries=0,
                params=GenParams(max_tokens=200, temperature=0.0),
            ),
        )
        out = tmp_path / "out.jsonl"
        report = run_generate_job(records, c, out, show_progress=False)
    assert sorted(r.id for r in read_records(out)) == ["q0", "q2", "q3"]
    (row,) = [json.loads(x) for x in Path(f"{out}.failures.jsonl").read_text().splitlines()]
    assert row["id"] == "q1" and row["step"] == "analyse" and "500" in row["error"]
    assert report.records_done == 3 and report.records_failed == 1 and report.status["kept"] == 3


def test_actor_rows_and_a_batch_that_raises(tmp_path, monkeypatch):
    """The actor in this process (no cluster): one row per record, done ones as records, and an exception in
    the batch marks each of its rows failed (step ``batch``) instead of failing the dataset."""
    import numpy as np

    from negforge.synth import generate
    from negforge.synth.ray_job import GenerateActor, actor_config
    from negforge.synth.schema import Record

    with FaultServer(reply_fn=mar_reply) as srv:
        c = GenerateConfig(
            num_negatives=1,
            seed=3,
            cache_dir=None,
            limit=1,
            profile=ProfileConfig(describe_with_llm=False),
            llm=LLMConfig(base_url=srv.base_url, model="fault-mar", params=GenParams(max_tokens=200)),
        )
        acfg = actor_config(c)
        assert acfg.limit is None and not acfg.ray.enabled  # the driver selected already
        actor = GenerateActor(acfg.model_dump_json(), None)
        batch = {"record": np.array([rec(i).model_dump_json() for i in range(2)])}
        out = actor(batch)
        assert list(out["id"]) == ["q0", "q1"] and out["failed"] == ["", ""] and out["report"][1] == ""
        assert [Record.model_validate_json(s).id for s in out["record"]] == ["q0", "q1"]

        def boom(*a, **k):
            raise ValueError("the flow broke\nsecond line")

        monkeypatch.setattr(generate, "generate_records", boom)
        out = actor(batch)
    assert out["record"] == ["", ""]
    rows = [json.loads(s) for s in out["failed"]]
    assert [r["id"] for r in rows] == ["q0", "q1"] and {r["step"] for r in rows} == {"batch"}
    assert rows[0]["error"] == "ValueError: the flow broke"


def test_without_ray_installed_the_job_says_how_to_install_it(tmp_path, monkeypatch):
    from negforge.synth.errors import ConfigError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    c = GenerateConfig(
        cache_dir=None,
        ray=RayConfig(enabled=True),
        profile=ProfileConfig(describe_with_llm=False),
        llm=LLMConfig(base_url="http://127.0.0.1:9/v1", model="m"),
    )
    with pytest.raises(ConfigError, match=r"pip install 'negforge\[ray\]'"):
        run_generate_job([rec(0)], c, tmp_path / "o.jsonl", show_progress=False)
    assert not (tmp_path / "o.jsonl").read_text()  # nothing written, the lock released
    assert not (tmp_path / "o.jsonl.lock").exists()
