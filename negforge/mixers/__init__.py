"""Mining and mixing: BM25 (:mod:`negforge.mixers.bm25`), dense (:mod:`negforge.mixers.dense`) and click-log
(:mod:`negforge.mixers.click`, demo logs from :mod:`negforge.mixers.clicklog_gen`) miners behind
:func:`negforge.mixers.mine.mine_records`; the hybrid mixer :func:`negforge.mixers.hybrid.mix_records`; cached
corpus embeddings in :mod:`negforge.mixers.embeddings`. Nothing heavy is imported here.
"""
