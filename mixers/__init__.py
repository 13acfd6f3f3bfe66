"""Mining and mixing: BM25 (:mod:`mixers.bm25`), dense (:mod:`mixers.dense`) and click-log
(:mod:`mixers.click`, demo logs from :mod:`mixers.clicklog_gen`) miners behind
:func:`mixers.mine.mine_records`; the hybrid mixer :func:`mixers.hybrid.mix_records`; cached
corpus embeddings in :mod:`mixers.embeddings`. Nothing heavy is imported here.
"""
