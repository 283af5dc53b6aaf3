"""Every command and subcommand's --help shows examples (README promises it)."""

import click
import typer


def _commands(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if hasattr(cmd, "commands"):  # a group (typer's own class is no click.Group subclass)
        for name, sub in cmd.commands.items():
            yield from _commands(sub, path + (name,))


def test_every_command_has_examples_in_its_help(run):
    from personaseg.cli.app import app

    root = typer.main.get_command(app)
    seen = []
    for path, _ in _commands(root):
        code, out, err = run(*path, "--help")
        assert code == 0, (path, err)
        lines = out.splitlines()
        assert "Examples:" in out, f"personaseg {' '.join(path)} --help has no examples"
        after = lines[[ln.strip() for ln in lines].index("Examples:") + 1:]
        examples = [ln.strip() for ln in after if ln.strip().startswith(("personaseg ", "accelerate "))]
        assert examples, f"personaseg {' '.join(path)} --help: no example command under Examples:"
        if path:  # an example of this very command
            assert any(f"personaseg {' '.join(path)}" in ex for ex in examples), (path, examples)
        seen.append(" ".join(path))
    for name in ("demo", "bench", "bench personal", "bench voc", "concepts list", "concepts export",
                 "toyworld", "toyworld make-bench", "segment"):
        assert name in seen
