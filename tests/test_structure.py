"""The package's shape stays as docs/design.md draws it: no import circles (tests/import_cycles.py),
no file over 400 lines, no function over 80 lines unless a ``# long: <why>`` comment on the lines
just above its ``def`` (or decorators) says why."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import import_cycles

PACKAGE = Path(__file__).resolve().parents[1] / "personaseg"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_checker_finds_a_circle_through_an_import_inside_a_function(tmp_path):
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import f\n",
        "pkg/b.py": "def f():\n    from pkg import a\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n",
        "pkg/sub/__init__.py": "from .x import g\n",
        "pkg/sub/x.py": "def g():\n    from ..c import TYPE_CHECKING\n",
    })
    assert import_cycles.check(pkg) == ["import circle: pkg.a -> pkg.b -> pkg.a"]


def test_checker_counts_a_package_init_run_on_the_way(tmp_path):
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/top.py": "def f():\n    from .sub.leaf import g\n",  # runs pkg/sub/__init__ first
        "pkg/sub/__init__.py": "from ..top import f\n",
        "pkg/sub/leaf.py": "g = 1\n",
    })
    assert import_cycles.check(pkg) == ["import circle: pkg.sub -> pkg.top -> pkg.sub"]


def test_checker_reports_an_import_of_a_module_that_is_gone(tmp_path):
    pkg = _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    from .moved import g\n"})
    (line,) = import_cycles.check(pkg)
    assert line.endswith("a.py:2: pkg.moved does not exist")


def test_the_package_has_no_import_circle():
    run = subprocess.run([sys.executable, "-m", "tests.import_cycles", str(PACKAGE)], capture_output=True,
                         text=True, cwd=PACKAGE.parent)
    assert run.returncode == 0, run.stdout + run.stderr


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_and_functions_stay_short(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path}: {len(lines)} lines (at most {MAX_FILE_LINES}): split it"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            said = any(line.strip().startswith("# long:") for line in lines[max(0, first - 4):first - 1])
            assert length <= MAX_FUNCTION_LINES or said, (
                f"{path}:{node.lineno}: {node.name} is {length} lines (at most {MAX_FUNCTION_LINES}, "
                "or say why in a '# long: ...' comment above it)")
