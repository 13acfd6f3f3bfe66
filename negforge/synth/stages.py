"""Every stage is called the same way: ``stage(records, dataset, config) -> (records, report)``.

================  ==========================================  =============================
stage             function                                    report
================  ==========================================  =============================
generate          ``negforge.synth.generate.generate_records``  ``GenerateReport``
mine              ``negforge.mixers.mine.mine_records``         ``MineReport``
verify            ``negforge.synth.verifiers.verify_records``   ``VerifyReport``
fn-report         ``negforge.synth.fn_report.fn_report``        ``FNReport``
mix               ``negforge.mixers.hybrid.mix_records``        ``MixReport``
================  ==========================================  =============================

``records`` is a list of :class:`~negforge.synth.schema.Record`; the input list is never
modified (a stage returns new records). ``dataset`` is a :class:`~negforge.synth.data.Dataset`
(corpus, queries, qrels: what the stage does not need may be missing; ``None`` is taken as an
empty ``Dataset()``). ``config`` is the stage's pydantic config. Options that are not part of the
config (``show_progress``, an epoch, precomputed vectors) are keyword-only. The report is a
:class:`~negforge.synth.reports.Report`.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from .data import Dataset
from .reports import Report
from .schema import Record


class Stage(Protocol):
    def __call__(
        self, records: list[Record], dataset: Optional[Dataset], cfg: Any, /, **options: Any
    ) -> tuple[list[Record], Report]: ...


def stage_dataset(stage: str, dataset: Optional[Dataset], cfg: Any, cfg_type: type) -> Dataset:
    """``dataset`` (``Dataset()`` for None), after checking the arguments came in the stage order.

    Calls written for the old orders (a corpus or a config in the second place) fail here with a
    TypeError that shows the new call, instead of somewhere deep inside the stage.
    """
    if not isinstance(cfg, cfg_type):
        raise TypeError(f"{stage}(records, dataset, cfg): cfg must be a {cfg_type.__name__}, got {type(cfg).__name__}")
    if dataset is None:
        return Dataset()
    if not isinstance(dataset, Dataset):
        raise TypeError(
            f"{stage}(records, dataset, cfg): dataset must be a negforge.synth.data.Dataset "
            f"(e.g. Dataset(corpus=..., qrels=...) or load_beir(folder)), got {type(dataset).__name__}"
        )
    return dataset
