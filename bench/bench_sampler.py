"""False in-batch negatives on NFCorpus train: sentence-transformers' no-duplicates sampler vs ours.

For every NFCorpus train query (2,590; a median of 18 positives, documents shared between queries) the
training rows are built as ``negforge train`` builds them (no hard negatives, so only in-batch negatives
count), batched once with each sampler (batch 32, seed 0), and a row is counted when its batch holds a
text (another row's positive) that is a positive of the row's own query. No model is loaded.

    python bench/bench_sampler.py           # seconds; writes bench/results/false_in_batch_negatives.json/.md
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def false_in_batch(batches, cols, row_records) -> int:
    text_cols = [c for c in cols if c not in ("label", "anchor")]
    bad = 0
    for batch in batches:
        for i in batch:
            own = {p.full_text for p in row_records[i].positives}
            bad += bool(own & {cols[c][j] for j in batch if j != i for c in text_cols})
    return bad


def main() -> None:
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    from negforge.synth.config import TrainConfig
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.trainer.sampler import QueryAwareBatchSampler
    from negforge.trainer.train import build_rows

    data = ROOT.parent / "shared" / "data" / "nfcorpus"
    recs = records_from_beir(load_beir(data, "train"))
    rows = []
    for mp, multi in ((1, False), (3, True)):
        cols, _, keys = build_rows(
            recs, TrainConfig(num_hard_negatives=0, max_positives=mp, positive_rule="first"), multi
        )
        per = [1 if multi else min(mp, len(r.positives)) for r in recs]
        row_records = [r for r, k in zip(recs, per) for _ in range(k)]
        ds = Dataset.from_dict(cols)
        out = {"max_positives": mp, "layout": "multi-positive" if multi else "one row per positive", "rows": len(ds)}
        for name, make in (
            (
                "no_duplicates",
                lambda ds=ds: NoDuplicatesBatchSampler(
                    ds, batch_size=32, drop_last=False, valid_label_columns=["label"], seed=0
                ),
            ),
            (
                "query_aware",
                lambda ds=ds, keys=keys: QueryAwareBatchSampler(ds, batch_size=32, drop_last=False, seed=0, rows=keys),
            ),
        ):
            t = time.perf_counter()
            batches = list(make())
            out[name] = {
                "batches": len(batches),
                "full_batches": sum(len(b) == 32 for b in batches),
                "rows_with_false_in_batch_negative": false_in_batch(batches, cols, row_records),
                "seconds": round(time.perf_counter() - t, 2),
            }
        rows.append(out)
    lines = [
        "# False in-batch negatives on NFCorpus train (2,590 queries, batch 32, seed 0)",
        "",
        "Command: `python bench/bench_sampler.py`. A row counts when its batch holds a positive of its own query.",
        "",
        "| positives per example | rows | sampler | batches (full) | rows with a false in-batch negative |",
        "|---|---:|---|---:|---:|",
    ]
    for r in rows:
        for name in ("no_duplicates", "query_aware"):
            s = r[name]
            lines.append(
                f"| {r['max_positives']} ({r['layout']}) | {r['rows']} | {name} | {s['batches']} "
                f"({s['full_batches']}) | {s['rows_with_false_in_batch_negative']} "
                f"({s['rows_with_false_in_batch_negative'] / r['rows']:.1%}) |"
            )
    res = ROOT / "bench" / "results" / "false_in_batch_negatives"
    res.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    res.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
