import json

import pytest

from negforge.synth.data import load_beir, load_corpus, records_from_beir, records_from_flag_jsonl
from negforge.synth.errors import InputError
from negforge.synth.io import RecordAppender, read_records, write_records
from negforge.synth.schema import Negative, Passage, Record, Source


def _rec(i: int) -> Record:
    return Record(
        id=f"q{i}",
        query=f"query {i}",
        positives=[Passage(text=f"pos {i}", doc_id=f"d{i}")],
        negatives=[Negative(text=f"neg {i}", source=Source.bm25)],
    )


def test_records_round_trip(tmp_path):
    path = tmp_path / "r.jsonl"
    write_records(path, [_rec(i) for i in range(3)])
    back = read_records(path)
    assert [r.id for r in back] == ["q0", "q1", "q2"]
    assert back[1].negatives[0].source == Source.bm25 and back[1].schema_version == 1


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(_rec(0).model_dump_json() + "\n" + "{not json\n")
    with pytest.raises(InputError, match=r"r\.jsonl:2: not valid JSON"):
        read_records(path)


def test_invalid_record_names_field(tmp_path):
    path = tmp_path / "r.jsonl"
    bad = json.loads(_rec(0).model_dump_json())
    bad["positives"] = []
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(InputError, match=r":1: invalid record \(positives: .*no positive"):
        read_records(path)


def test_flag_jsonl_query_without_positive(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"query": "a", "pos": ["p"], "neg": ["n"]}\n{"query": "b", "pos": [], "neg": []}\n')
    with pytest.raises(InputError, match=r"train\.jsonl:2: query has no positive"):
        records_from_flag_jsonl(path)
    path.write_text('{"query": "a", "pos": ["p"], "neg": ["n1", "n2"]}\n')
    (r,) = records_from_flag_jsonl(path)
    assert [n.text for n in r.negatives] == ["n1", "n2"] and r.negatives[0].source == Source.imported


def test_empty_corpus_is_an_error(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n")
    with pytest.raises(InputError, match="corpus is empty"):
        load_corpus(path)


def test_beir_loads_real_slice(tiny_beir):
    data = load_beir(tiny_beir, "train")
    records = records_from_beir(data)
    assert len(records) == 20
    assert all(p.doc_id in data.corpus for r in records for p in r.positives)
    assert data.corpus.passage(records[0].positives[0].doc_id).text == records[0].positives[0].text


def test_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match="bundled default is ../shared/data/scifact"):
        load_beir(tmp_path / "nope")


def test_appender_resumes_after_torn_line(tmp_path):
    path = tmp_path / "out.jsonl"
    with RecordAppender(path) as w:
        w.append(_rec(0))
        w.append(_rec(1))
    with path.open("ab") as f:  # a crash in the middle of a write
        f.write(_rec(2).model_dump_json().encode()[:25])
    with RecordAppender(path) as w:
        assert w.done == {"q0", "q1"}
        w.append(_rec(2))
        with pytest.raises(ValueError, match="already written"):
            w.append(_rec(1))
    assert [r.id for r in read_records(path)] == ["q0", "q1", "q2"]


def test_write_records_is_atomic(tmp_path):
    path = tmp_path / "r.jsonl"
    write_records(path, [_rec(0)])

    def boom():
        yield _rec(1)
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_records(path, boom())
    assert [r.id for r in read_records(path)] == ["q0"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]
