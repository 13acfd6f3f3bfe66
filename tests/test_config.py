"""Config loading: the shipped default file, overrides, and clear errors."""

from pathlib import Path

import pytest

from negforge.synth.config import MixConfig, RunConfig, load_config
from negforge.synth.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_is_exactly_the_defaults():
    import importlib.util

    spec = importlib.util.spec_from_file_location("wdc", ROOT / "scripts" / "write_default_config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (ROOT / "configs" / "default.yaml").read_text()
    assert text == mod.render(), "configs/default.yaml is stale: python3 scripts/write_default_config.py"
    assert load_config(RunConfig, ROOT / "configs" / "default.yaml") == RunConfig()


def test_overrides_sections_and_flags(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("mix:\n  k: 6\ngenerate:\n  num_negatives: 3\n")
    cfg = load_config(RunConfig, p, ["mix.ratios={llm: 1.0}", "train.lr=1e-4"], llm_queries=5)
    assert (cfg.mix.k, cfg.mix.ratios, cfg.train.lr, cfg.llm_queries) == (6, {"llm": 1.0}, 1e-4, 5)
    assert cfg.generate.num_negatives == 3
    # a stage command reads its own section of a run config
    assert load_config(MixConfig, p, section="mix").k == 6


@pytest.mark.parametrize(
    "content,overrides,match",
    [
        ("mix:\n  k: 0\n", [], "mix.k"),
        ("mix:\n  kk: 3\n", [], "kk"),
        ("[1, 2]\n", [], "mapping"),
        ("a: [\n", [], "not valid YAML"),
        ("", ["mix.ratios={foo: 1}"], "unknown source 'foo'"),
        ("", ["novalue"], "key.path=value"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, content, overrides, match):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_config(RunConfig, p, overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(RunConfig, tmp_path / "nope.yaml")


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_config_reference_is_generated_and_every_field_is_described():
    ref = _script("write_config_reference")
    assert ref.undocumented() == [], "every config field needs Field(description=...)"
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == ref.render(), "docs/config.md is stale: python3 scripts/write_config_reference.py"
    assert "| `k1` | float | `1.5` |" in text and "## `mine.click`" in text


def test_one_encoder_section_shared_by_mine_verify_and_eval(tmp_path):
    from negforge.synth.config import EvalConfig, MineConfig

    p = tmp_path / "run.yaml"
    p.write_text("encoder:\n  model: my-encoder\n  max_seq_length: 128\neval:\n  encoder:\n    batch_size: 8\n")
    cfg = load_config(RunConfig, p)
    assert cfg.mine.encoder == cfg.verify.encoder == cfg.encoder and cfg.encoder.max_seq_length == 128
    assert (cfg.eval.encoder.model, cfg.eval.encoder.batch_size) == ("my-encoder", 8)  # its own key wins
    # written once: a section's encoder is left out of the dump where it equals the shared one
    dumped = cfg.model_dump(mode="json")
    assert "encoder" not in dumped["mine"] and dumped["eval"]["encoder"]["batch_size"] == 8
    assert RunConfig.model_validate(dumped) == cfg
    # a stage command reading its section of a run config gets the shared encoder too
    assert load_config(MineConfig, p, section="mine").encoder.model == "my-encoder"
    assert load_config(EvalConfig, p, section="eval").encoder.max_seq_length == 128
    assert MineConfig(encoder="other").encoder.model == "other"  # a name alone is the model


def test_moved_keys_still_work(tmp_path, caplog):
    from negforge.synth.config import MineConfig

    cfg = load_config(
        RunConfig,
        None,
        [
            "mine.index=flat",
            "mine.click_log=c.jsonl",
            "mine.cache_dir=/tmp/e",
            "eval.max_seq_length=64",
            "verify.batch_size=16",
        ],
    )
    assert (cfg.mine.dense.index, cfg.mine.click.log, cfg.mine.encoder.cache_dir) == ("flat", "c.jsonl", "/tmp/e")
    assert cfg.eval.encoder.max_seq_length == 64 and cfg.verify.encoder.batch_size == 16
    assert cfg.verify.encoder.cache_dir == cfg.encoder.cache_dir  # only mine's cache moved
    assert (
        MineConfig(min_impressions=3, click={"log": "x"}).click
        == MineConfig(click={"log": "x", "min_impressions": 3}).click
    )
    # per-miner settings that only code could set before
    assert load_config(MineConfig, None, ["bm25.k1=0.9", "click.max_ctr=0.2"]).bm25.k1 == 0.9
