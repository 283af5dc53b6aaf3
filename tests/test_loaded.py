"""The concepts loaded onto one pipeline (personaseg.loaded), without a model where none is needed."""

import re
import shlex
import shutil
import subprocess

import pytest

from personaseg.errors import ConceptError
from personaseg.loaded import LoadedConcepts


@pytest.mark.parametrize("name", ["<nope>", "nope"])
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_unknown_concept_without_a_store_hints_a_line_a_shell_takes(name):
    """The hint printed `--token <nope>` unquoted: pasted into a shell, `<nope>` is a redirection."""
    with pytest.raises(ConceptError, match="unknown concept") as err:
        LoadedConcepts(pipe=None).load(name)
    command = re.search(r"`([^`]*)`", err.value.hint).group(1)
    assert subprocess.run(["bash", "-n", "-c", command], capture_output=True).returncode == 0, command
    assert shlex.split(command) == ["personaseg", "learn", "PHOTOS", "--token", "<nope>"]
