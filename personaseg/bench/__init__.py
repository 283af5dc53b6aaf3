"""Benchmarks: dataset layouts, metrics, the runner (sharding, resume) and reports.

    >>> from personaseg.bench import BenchConfig, run_personal
    >>> report = run_personal("data/toy-bench", BenchConfig(model="toy", out="runs/toy"))

Files: ``config.py`` (BenchConfig), ``datasets.py`` / ``hf.py`` (layouts), ``metrics.py``,
``learning.py`` (concept cache), ``runner.py`` (run_personal), ``voc.py`` (run_voc),
``report.py`` (report.json / .md / grid); sharding and the JSONL log are :mod:`personaseg.runtime`'s and
:mod:`personaseg.io`'s,
``examples.py`` (tiny example datasets).
"""

from .config import BenchConfig
from .datasets import BenchData, ConceptSpec, Sample, open_dataset
from .runner import run_personal
from .voc import VocConfig, run_voc

__all__ = ["BenchConfig", "BenchData", "ConceptSpec", "Sample", "VocConfig", "open_dataset", "run_personal",
           "run_voc"]
