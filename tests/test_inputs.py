"""Inputs users already have, read into records: datasets folders (save_to_disk) and objects with a
column map, sentence-transformers pairs / n-tuples / triplets, CSV/TSV pairs, Parquet, Tevatron
(both layouts, our own exports), FlagEmbedding, records; the detected format named in errors."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from negforge.synth.data import load_beir, records_from_beir
from negforge.synth.errors import ConfigError, InputError
from negforge.synth.inputs import detect_format, parse_columns, read_corpus, read_input
from negforge.synth.io import write_records
from negforge.synth.schema import Negative, Source, Status, Verdict
from negforge.trainer.export import export_records


@pytest.fixture(scope="module")
def beir_records(tiny_beir):
    return records_from_beir(load_beir(tiny_beir, "train"))[:10]


@pytest.fixture(scope="module")
def pairs(beir_records):
    """(query, positive text) pairs from the real SciFact slice: one row per positive."""
    return [(r.query, p.full_text) for r in beir_records for p in r.positives]


def test_saved_dataset_with_column_map(pairs, beir_records, tmp_path):
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_dict({"claim": [q for q, _ in pairs], "abstract": [p for _, p in pairs]})
    ds.save_to_disk(str(tmp_path / "ds"))
    assert detect_format(tmp_path / "ds") == "hf-dataset"
    with pytest.raises(InputError, match=r"\(hf-dataset\): no query column .*columns: claim, abstract"):
        read_input(tmp_path / "ds")
    got = read_input(tmp_path / "ds", columns={"query": "claim", "positive": "abstract"})
    assert got.format == "hf-dataset" and got.dataset.corpus is None
    assert [r.query for r in got.records] == [r.query for r in beir_records]
    assert [[p.text for p in r.positives] for r in got.records] == [
        [p.full_text for p in r.positives] for r in beir_records
    ]
    assert len({r.id for r in got.records}) == len(got.records)
    # a DatasetDict folder: the split is chosen, a missing one is named; a Dataset object works too
    DatasetDict({"train": ds, "dev": ds.select(range(2))}).save_to_disk(str(tmp_path / "dd"))
    cols = parse_columns("query=claim,positive=abstract")
    assert len(read_input(tmp_path / "dd", columns=cols, split="dev").records) <= 2
    with pytest.raises(InputError, match="no split 'test'; it has train, dev"):
        read_input(tmp_path / "dd", columns=cols, split="test")
    assert len(read_input(ds, columns=cols).records) == len(beir_records)
    with pytest.raises(InputError, match="no column 'title' \\(for positive\\)"):
        read_input(ds, columns={"query": "claim", "positive": "title"})
    with pytest.raises(ConfigError, match="unknown column role 'passage'"):
        read_input(ds, columns={"passage": "abstract"})


def test_sentence_transformers_pairs_ntuples_and_triplets(pairs, tmp_path):
    from datasets import Dataset

    queries = list(dict.fromkeys(q for q, _ in pairs))
    pos = {q: [p for qq, p in pairs if qq == q] for q in queries}
    others = [p for _, p in pairs]
    ntuple = Dataset.from_dict(
        {
            "anchor": queries,
            "positive": [pos[q][0] for q in queries],
            "negative_1": others[-len(queries) :],
            "negative_2": others[: len(queries)],
        }
    )
    recs = read_input(ntuple).records
    assert [r.query for r in recs] == queries
    want = [x for x in (others[-len(queries)], others[0]) if x != pos[queries[0]][0]]
    assert [n.text for n in recs[0].negatives] == want
    assert all(n.source == Source.imported and n.verdict is None for r in recs for n in r.negatives)
    triplets = Dataset.from_dict(
        {"anchor": [queries[0]] * 3, "positive": [pos[queries[0]][0]] * 3, "negative": others[-3:]}
    )
    (one,) = read_input(triplets).records  # one row per negative: one record
    assert [n.text for n in one.negatives] == others[-3:] and len(one.positives) == 1


def _write_table(path, header, rows, delimiter):
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


def test_csv_and_tsv_pairs(pairs, beir_records, tmp_path):
    _write_table(tmp_path / "pairs.csv", ["query", "positive"], pairs, ",")
    got = read_input(tmp_path / "pairs.csv")
    assert got.format == "csv" and [r.query for r in got.records] == [r.query for r in beir_records]
    assert sum(len(r.positives) for r in got.records) == len(pairs)  # a query's rows: one record
    _write_table(
        tmp_path / "pairs.tsv",
        ["qid", "question", "passage"],
        [(f"Q{i}", q, p) for i, (q, p) in enumerate(pairs[:3])],
        "\t",
    )
    got = read_input(tmp_path / "pairs.tsv", columns={"query": "question"})
    assert got.format == "tsv" and [r.id for r in got.records] == ["Q0", "Q1", "Q2"]
    _write_table(tmp_path / "bad.csv", ["a", "b"], pairs[:2], ",")
    with pytest.raises(InputError, match=r"bad\.csv \(csv\): no query column .*columns: a, b"):
        read_input(tmp_path / "bad.csv")
    _write_table(tmp_path / "gap.csv", ["query", "positive"], [pairs[0], ("lonely query", "")], ",")
    with pytest.raises(InputError, match=r"gap\.csv \(csv\) line 3: query .* has no positive"):
        read_input(tmp_path / "gap.csv")
    # one id, two different queries: an input error naming both rows
    _write_table(tmp_path / "dup.tsv", ["id", "query", "positive"], [("1", "a", "x"), ("1", "b", "y")], "\t")
    with pytest.raises(InputError, match=r"line 3: query id '1' names two different queries \(first at .*line 2\)"):
        read_input(tmp_path / "dup.tsv")


def test_own_exports_read_back(tiny_beir, beir_records, tmp_path):
    kept = Verdict(status=Status.kept, rule="all", reason="passed")
    corpus = load_beir(tiny_beir, "train").corpus
    other = [d for d in corpus.ids if d not in {p.doc_id for r in beir_records for p in r.positives}]
    recs = [
        r.model_copy(
            update={"negatives": [Negative(**corpus.passage(other[i]).model_dump(), source="bm25", verdict=kept)]}
        )
        for i, r in enumerate(beir_records)
    ]
    recs[0].negatives.append(Negative(text="A generated passage.", source="llm", verdict=kept))
    # Parquet (this was a traceback): sources and doc ids come back
    back = read_input(export_records(recs, "parquet", tmp_path / "x.parquet").path)
    assert back.format == "parquet" and [r.id for r in back.records] == [r.id for r in recs]
    assert [(n.source, n.doc_id) for n in back.records[0].negatives] == [(Source.bm25, other[0]), (Source.llm, None)]
    # Tevatron, id-based: the folder, and the train file with its corpus beside it
    export_records(recs, "tevatron", tmp_path / "tev")
    for src in (tmp_path / "tev", tmp_path / "tev" / "train.jsonl"):
        got = read_input(src)
        assert got.format == "tevatron" and len(got.dataset.corpus) >= len(recs) + 1
        assert [p.doc_id for p in got.records[1].positives] == [p.doc_id for p in recs[1].positives]
        assert [n.full_text for n in got.records[0].negatives] == [n.full_text for n in recs[0].negatives]
    lonely = tmp_path / "lonely.jsonl"
    lonely.write_text((tmp_path / "tev" / "train.jsonl").read_text())
    with pytest.raises(InputError, match=r"lonely\.jsonl \(tevatron\): the id-based format needs its corpus"):
        read_input(lonely)
    assert read_corpus(tmp_path / "tev" / "corpus.jsonl").ids == got.dataset.corpus.ids
    # Tevatron legacy and FlagEmbedding
    legacy = read_input(export_records(recs, "tevatron-legacy", tmp_path / "l.jsonl").path)
    assert legacy.format == "tevatron-legacy" and legacy.records[2].negatives[0].doc_id == other[2]
    flag = read_input(export_records(recs, "flagembedding", tmp_path / "f.jsonl").path)
    assert flag.format == "flagembedding" and [r.id for r in flag.records] == [r.id for r in recs]
    # records, and a BEIR folder
    write_records(tmp_path / "r.jsonl", recs)
    assert read_input(tmp_path / "r.jsonl").format == "records"
    beir = read_input(tiny_beir, limit=3)
    assert beir.format == "beir" and len(beir.records) == 3 and beir.dataset.qrels


def test_duplicate_ids_and_unknown_inputs(tmp_path):
    line = {"query": "q", "pos": ["p"], "neg": ["n"], "id": "7"}
    (tmp_path / "f.jsonl").write_text(json.dumps(line) + "\n" + json.dumps({**line, "query": "q2"}) + "\n")
    with pytest.raises(InputError, match=r"f\.jsonl:2: .*'7' appears again \(first at line 1\)"):
        read_input(tmp_path / "f.jsonl")
    tev = {
        "query_id": "5",
        "query": "q",
        "positive_passages": [{"docid": "d", "title": "", "text": "p"}],
        "negative_passages": [],
    }
    (tmp_path / "t.jsonl").write_text(json.dumps(tev) + "\n" + json.dumps({**tev, "query": "other"}) + "\n")
    with pytest.raises(InputError, match=r"t\.jsonl:2: query id '5' appears again \(first at line 1\)"):
        read_input(tmp_path / "t.jsonl")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"claim": "q", "abstract": "a"}) + "\n")
    assert read_input(tmp_path / "rows.jsonl", columns={"query": "claim", "positive": "abstract"}).format == "jsonl"
    with pytest.raises(InputError, match=r"rows\.jsonl \(jsonl\): no query column"):
        read_input(tmp_path / "rows.jsonl")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="a folder that is none of: a BEIR folder"):
        read_input(tmp_path / "folder")
    with pytest.raises(InputError, match="no such file or folder"):
        read_input(tmp_path / "missing.csv")
    with pytest.raises(InputError, match=r"\(hf-dataset\): could not load it from the Hugging Face Hub"):
        read_input("no-such-user/no-such-dataset")
    with pytest.raises(ConfigError, match="columns= only applies"):
        read_input(tmp_path / "f.jsonl", columns={"query": "q"})


def test_mine_cli_on_a_csv_of_pairs(pairs, tmp_path):
    from negforge.synth.cli import app

    _write_table(tmp_path / "pairs.csv", ["claim", "abstract"], pairs, ",")
    out = tmp_path / "mined.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "mine",
            "-i",
            str(tmp_path / "pairs.csv"),
            "-o",
            str(out),
            "--sources",
            "bm25",
            "--columns",
            "query=claim,positive=abstract",
            "--set",
            "num_negatives=2",
            "--set",
            "range_max=5",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 10 and all(len(r["negatives"]) <= 2 for r in recs)
    assert sum(len(r["negatives"]) == 2 for r in recs) >= 5, [len(r["negatives"]) for r in recs]
    assert all(n["text"] not in {p["text"] for p in r["positives"]} for r in recs for n in r["negatives"])
    res = CliRunner().invoke(app, ["mine", "-i", str(tmp_path / "pairs.csv"), "-o", str(out), "--sources", "bm25"])
    assert res.exit_code == 2 and "(csv): no query column" in res.output
