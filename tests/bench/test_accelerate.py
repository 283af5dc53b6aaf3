"""Two real processes (accelerate launch, gloo on the CPU) give the single-process report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from personaseg.bench import examples
from personaseg.cli.app import app


@pytest.mark.slow
def test_accelerate_two_processes_match_one(tiny_model_dir, tmp_path):
    data = examples.make_mug19(tmp_path / "data")
    recipe = tmp_path / "quick.toml"
    recipe.write_text("[learn]\ngrad_accum = 1\ncheckpoint_every = 0\n\n[find]\nlong_side = 64\n")
    common = ["bench", "personal", str(data), "--model", str(tiny_model_dir), "--recipe", str(recipe),
              "--steps", "1", "--resolution", "32", "--draws", "1", "--concepts-dir", str(tmp_path / "concepts")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each launched process (torchrun: OMP_NUM_THREADS=1): same float sums
    try:
        one = CliRunner().invoke(app, common + ["--out", str(tmp_path / "one")])
    finally:
        torch.set_num_threads(threads)
    assert one.exit_code == 0, one.output
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "personaseg", *common,
           "--out", str(tmp_path / "two")]
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r1 = json.loads((tmp_path / "one" / "report.json").read_text())
    r2 = json.loads((tmp_path / "two" / "report.json").read_text())
    assert r2["timing"]["processes"] == 2 and r1["timing"]["processes"] == 1
    assert r2["results"] == r1["results"]  # concepts came from the same cache: identical figures
    assert not list((tmp_path / "two").glob("*.part*"))
