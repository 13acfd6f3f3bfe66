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


@pytest.mark.parametrize("content,overrides,match", [
    ("mix:\n  k: 0\n", [], "mix.k"),
    ("mix:\n  kk: 3\n", [], "kk"),
    ("[1, 2]\n", [], "mapping"),
    ("a: [\n", [], "not valid YAML"),
    ("", ["mix.ratios={foo: 1}"], "unknown source 'foo'"),
    ("", ["novalue"], "key.path=value"),
])
def test_bad_config_is_a_clear_error(tmp_path, content, overrides, match):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_config(RunConfig, p, overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(RunConfig, tmp_path / "nope.yaml")
