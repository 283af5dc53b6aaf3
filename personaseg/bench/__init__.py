"""Benchmarks: dataset layouts, metrics, the runner (sharding, resume) and reports.

    >>> from personaseg.bench import BenchConfig, run_personal
    >>> report = run_personal("data/toy-bench", BenchConfig(model="toy", out="runs/toy"))

Files: ``config.py`` (BenchConfig), ``data.py`` (Sample, ConceptSpec, BenchData), ``datasets.py``
(open_dataset: picks a layout) over one module per layout (``mug19.py``, ``perseg.py``, ``hf.py``;
``davis.py`` for videos, ``pascal.py`` for VOC), ``metrics.py`` and ``jf.py`` (scores),
``learning.py`` (concept cache), ``rundir.py`` (the run folder: log, parts, resume, mask paths,
report files; shared by the runners), ``runner.py`` (run_personal), ``report.py`` (its report.json /
.md / grid), ``voc.py`` (run_voc), ``video.py`` (run_video), ``examples.py`` (tiny example datasets).
Sharding and the JSONL log are :mod:`personaseg.runtime`'s and :mod:`personaseg.io`'s.
"""

from .config import BenchConfig
from .data import BenchData, BenchWarning, ConceptSpec, Sample
from .datasets import open_dataset
from .runner import run_personal
from .voc import VocConfig, run_voc

__all__ = ["BenchConfig", "BenchData", "BenchWarning", "ConceptSpec", "Sample", "VocConfig", "open_dataset", "run_personal",
           "run_voc"]
