"""Template sets as folders (templates + space.yaml), rendered for three corpora of different domains
(SciFact abstracts, NFCorpus medical documents, TREC DL 2019 web passages) with each corpus's profile;
user sets change the attribute space with no code change; bad space files fail with the file and key."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fault_server import mar_reply
from scripted_backend import ScriptedBackend
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.config import GenerateConfig, ProfileConfig
from negforge.synth.data import load_beir, load_corpus, records_from_beir
from negforge.synth.errors import ConfigError
from negforge.synth.flows import make_flow
from negforge.synth.gen_report import GenerateReport as JobSummary
from negforge.synth.io import read_records
from negforge.synth.job import run_generate_job
from negforge.synth.profile import corpus_profile
from negforge.synth.templates import TemplateSet, builtin_sets, builtin_sets_dir

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = {"scifact": "train", "nfcorpus": "train", "trec-dl-2019": "test"}
# words of scientific text that must never come from a template, a space file or generic code
DOMAIN_WORDS = re.compile(
    r"scientific|\babstracts?\b|\bstud(y|ies|ied)\b|\bgenes?\b|protein|\bdrugs?\b|"
    r"patient|\bmice\b|research|clinical|disease",
    re.I,
)


@pytest.fixture(scope="module")
def corpora() -> dict[str, list]:
    out = {}
    for name, split in CORPORA.items():
        if not (DATA / name / "corpus.jsonl").is_file():
            pytest.fail(f"{DATA / name} is missing: these tests need ../shared/data/{name}")
        out[name] = records_from_beir(load_beir(DATA / name, split), 3)
    return out


def _cfg(template: str, corpus: str, **kw) -> GenerateConfig:
    return GenerateConfig(
        template=template,
        cache_dir=None,
        profile=ProfileConfig(corpus=str(DATA / corpus), description=None, describe_with_llm=False),
        **kw,
    )


def _prompts(template: str, corpus: str, records) -> tuple[list[str], object]:
    """Every step of the set rendered for every record (placeholders for the earlier steps' output)."""
    cfg = _cfg(template, corpus)
    flow = make_flow(None, cfg, JobSummary(), corpus_profile(cfg.profile, records))
    texts = []
    for r in records:
        for step in flow.STEPS:
            for index in (0, 1):
                (msg,) = flow.preview(r, step, index)[0]
                texts.append((r, msg["content"]))
    return texts, flow


def _without_corpus_text(prompt: str, record, flow) -> str:
    """The prompt with everything that came from the corpus removed: what is left is template and code."""
    for part in [record.query, flow._positive(record), *flow.profile.examples]:
        prompt = prompt.replace(part, " ")
    return prompt


@pytest.mark.parametrize("template", ["mar", "counterfactual", "mar_scifact"])
@pytest.mark.parametrize("corpus", list(CORPORA))
def test_every_builtin_set_renders_for_three_corpora(template, corpus, corpora):
    records = corpora[corpus]
    texts, flow = _prompts(template, corpus, records)
    docs = {t for t in load_corpus(DATA / corpus / "corpus.jsonl").full_texts()}
    assert len(flow.profile.examples) == 3 and flow.profile.source == str(DATA / corpus)
    for ex in flow.profile.examples:  # real documents of this corpus, trimmed
        stem = ex.removesuffix(" ...")
        assert any(d.startswith(stem) or " ".join(d.split()).startswith(stem) for d in docs)
    showing_examples = 0
    for r, prompt in texts:
        assert r.query in prompt and flow._positive(r) in prompt
        assert "{{" not in prompt and "{%" not in prompt
        if all(ex in prompt for ex in flow.profile.examples):
            showing_examples += 1
        rest = _without_corpus_text(prompt, r, flow)
        if template == "mar_scifact":  # the worked example is tuned to scientific abstracts on purpose
            continue
        assert not DOMAIN_WORDS.search(rest), (template, corpus, DOMAIN_WORDS.search(rest).group(0), rest)
        assert "documents of this corpus" in rest
    # every step shows the corpus's own examples: they are in the shared prefix
    assert showing_examples == len(texts)
    # every step of one record begins with the same prefix (the set's prefix.jinja2), the step's part after it
    assert flow.templates.has_prefix
    for r in records:
        steps = [p for rr, p in texts if rr is r]
        shared = flow.templates.render_prefix(query=r.query, positive=flow._positive(r), profile=flow.profile_vars)
        assert len(steps) == 2 * len(flow.STEPS) and all(p.startswith(shared + "\n\nStep: ") for p in steps)
    if template == "mar_scifact":
        assert any("written like a scientific abstract" in p for _, p in texts)
        assert any("- population:" in p for _, p in texts)


def test_web_corpus_prompts_speak_of_the_web_corpus(corpora):
    """TREC DL: the mar analyse prompt lists the generic attributes, the examples are web passages."""
    records = corpora["trec-dl-2019"]
    texts, flow = _prompts("mar", "trec-dl-2019", records)
    analyse = texts[0][1]
    for name in ("topic", "entities", "intent", "quantity", "scope"):
        assert f"- {name}: " in analyse
    assert "- population:" not in analyse and "- method:" not in analyse
    web_docs = set(load_corpus(DATA / "trec-dl-2019" / "corpus.jsonl").full_texts())
    scifact_docs = load_corpus(DATA / "scifact" / "corpus.jsonl").full_texts()
    assert all(any(d.startswith(ex.removesuffix(" ...")) for d in web_docs) for ex in flow.profile.examples)
    assert not any(ex.removesuffix(" ...") in d for ex in flow.profile.examples for d in scifact_docs[:2000])
    # the target length follows the corpus: web passages are short (median ~60 words), so no draft asks for 200
    assert flow.profile.length["median"] < 100
    for r in records:
        assert flow.setting(r, 0, {})["length_words"] <= max(flow.space.min_words, flow.profile.length["p90"] * 1.2 + 5)


def test_default_set_and_generic_code_are_domain_free():
    assert GenerateConfig().template == "mar" and set(builtin_sets()) == {"mar", "counterfactual", "mar_scifact"}
    for name in ("mar", "counterfactual"):
        for f in (builtin_sets_dir() / name).iterdir():
            assert not DOMAIN_WORDS.search(f.read_text()), (f, DOMAIN_WORDS.search(f.read_text()).group(0))
    root = Path(__file__).resolve().parents[1] / "negforge"
    prompt_code = [
        "generate",
        "counterfactual",
        "flows",
        "attributes",
        "draft_checks",
        "parsing",
        "profile",
        "space",
        "templates",
        "prompt_lab",
        "shortcut",
        "verifiers/llm_judge",
    ]  # what builds prompts and checks
    for f in [*(root / "synth" / f"{m}.py" for m in prompt_code), *(root / "prompts").glob("*.jinja2")]:
        hits = [m.group(0) for m in DOMAIN_WORDS.finditer(f.read_text())]
        assert not hits, (f, hits)


# -- a user's own set -------------------------------------------------------------------------------
@pytest.fixture
def product_set(tmp_path) -> Path:
    d = tmp_path / "sets" / "shop"
    shutil.copytree(builtin_sets_dir() / "mar", d)
    (d / "space.yaml").write_text("""flow: mar
query_attributes:
  product: the product or product line asked about
  price: a price or price range
  feature: a feature, size or colour
domains: {same: the same shop category}
difficulties: {hard: "same product family, one detail differs"}
edits: {change: give another value for it}
length_factors: [1.0]
never_flip: []
draft_checks: {meta_phrases: ["as an ai"], copy_share: 0.6}
""")
    return d


def _shop_reply(conv):
    prompt = conv[0]["content"]
    if "List the attributes of the query" in prompt:
        return '{"product": "trail shoe", "price": "under 100 dollars", "feature": "", "key_fact": "costs 90"}'
    return mar_reply(conv)


def test_a_user_set_changes_the_attributes_with_no_code_change(tmp_path, product_set, corpora):
    records = corpora["trec-dl-2019"][:2]
    ts = TemplateSet(str(product_set))
    assert ts.name == "shop" and ts.flow == "mar" and ts.hash != TemplateSet("mar").hash
    assert list(ts.space.query_attributes) == ["product", "price", "feature"]
    cfg = _cfg(str(product_set), "trec-dl-2019", num_negatives=3, reflection_rounds=1)
    backend = ScriptedBackend(_shop_reply)
    run_generate_job(records, cfg, tmp_path / "out.jsonl", show_progress=False, backend=backend)
    analyse_prompt = backend.seen[0][0][0]["content"]
    assert "- product: the product or product line asked about" in analyse_prompt
    assert "- entities:" not in analyse_prompt
    schema = backend.seen[0][1].json_schema  # the reply schema asks for the user's attributes
    assert set(schema["properties"]) == {"product", "price", "feature", "key_fact"}
    out = read_records(tmp_path / "out.jsonl")
    negs = [n for r in out for n in r.negatives]
    assert negs and all(n.provenance.attributes["flip"] in ("product", "price") for n in negs)  # found ones only
    assert all(n.provenance.template == "shop" and n.provenance.template_hash == ts.hash for n in negs)
    assert all(n.provenance.attributes["domain"] == "same" and n.provenance.extra["flow"] == "mar" for n in negs)
    # --template-dir: the folder holding set folders, the name looked up there
    assert TemplateSet("shop", str(product_set.parent)).hash == ts.hash


def test_the_hash_covers_templates_and_space(product_set):
    before = TemplateSet(str(product_set)).hash
    space = product_set / "space.yaml"
    space.write_text(space.read_text().replace("a price or price range", "a price"))
    after_space = TemplateSet(str(product_set)).hash
    (product_set / "reflect.jinja2").write_text((product_set / "reflect.jinja2").read_text() + "\nBe brief.")
    assert len({before, after_space, TemplateSet(str(product_set)).hash}) == 3


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda s: s.replace("query_attributes:", "query_atributes:"),
            r"space.yaml: key 'query_atributes': unknown key",
        ),
        (lambda s: s.replace("length_factors: [1.0]", "length_factors: [fast]"), r"space.yaml: key 'length_factors.0'"),
        (lambda s: s.replace("never_flip: []", "never_flip: [colour]"), r"space.yaml: key '\(top level\)'|never_flip"),
        (
            lambda s: s.replace("flow: mar", "flow: magic"),
            r"space.yaml: key 'flow': unknown flow 'magic'; valid: "
            r"counterfactual, mar",
        ),
        (
            lambda s: s.replace("domains: {same: the same shop category}", "domains: {}"),
            r"space.yaml: key 'domains': "
            r"the 'mar' flow needs",
        ),
        (
            lambda s: s.replace("  price: a price or price range", "  price: ''"),
            r"space.yaml: key 'query_attributes': "
            r"'price' needs a description",
        ),
        (lambda s: s.replace("copy_share: 0.6", "copy_share: 3"), r"space.yaml: key 'draft_checks.copy_share'"),
        (lambda s: s + "  bad: [unclosed\n", r"space.yaml:\d+: not valid YAML"),
    ],
)
def test_a_bad_space_file_names_the_file_and_the_key(product_set, edit, match):
    space = product_set / "space.yaml"
    space.write_text(edit(space.read_text()))
    with pytest.raises(ConfigError, match=match) as e:
        TemplateSet(str(product_set))
    assert str(space) in str(e.value)


def test_missing_templates_and_syntax_errors_name_the_file(product_set, tiny_beir):
    (product_set / "generate.jinja2").write_text("Query: {{ query }\n")
    with pytest.raises(ConfigError, match=r"shop/generate.jinja2:1: template syntax error"):
        TemplateSet(str(product_set))
    (product_set / "generate.jinja2").unlink()
    with pytest.raises(ConfigError, match=r"the 'mar' flow needs generate.jinja2"):
        TemplateSet(str(product_set))
    # through the CLI: one line, exit 2
    res = CliRunner().invoke(app, ["prompt", "render", str(product_set), "--data", str(tiny_beir)])
    assert res.exit_code == 2 and "generate.jinja2" in res.output and "Traceback" not in res.output
