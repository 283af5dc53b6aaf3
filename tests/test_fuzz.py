"""A short seeded pass of the fuzz harness (benchmarks/fuzz.py) over every reader of files a user
may be sent: each input must end well or in a PersonasegError (the long run is in RESULTS.md)."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"
TARGETS = ["image", "concept", "embedding", "checkpoint", "index", "concept_toml", "perseg", "recipe"]
INPUTS = 150  # per target: about a second each on one core


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("personaseg_fuzz", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module, module.make_targets()


@pytest.mark.parametrize("name", TARGETS)
def test_crafted_inputs_end_in_our_own_errors(fuzz, name):
    module, targets = fuzz
    report = module.run({name: targets[name]}, INPUTS, seed=21, chunk=INPUTS, timeout=30.0, raise_on_failure=True)
    assert report.counts[name] == INPUTS and not report.findings
    assert report.ours.get(name, 0) > 0  # the inputs do reach the error paths
