"""The user-facing exception family.

Everything a user controls (paths, images, phrases, models, recipes, concepts, datasets) fails
with a :class:`PersonasegError`. Its message is one line naming the input and the fix; the CLI
prints it and exits with ``exit_code``. ``assert`` is kept for our own invariants.
"""

from __future__ import annotations


class PersonasegError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class PersonasegWarning(UserWarning):
    """Base class of our warnings: something the run can live with, shown as one line by the CLI."""


class InputError(PersonasegError):
    """An image, path or output folder that cannot be used."""


class PhraseError(PersonasegError):
    """A phrase that is empty, not in the prompt, or makes the prompt too long."""


class ModelError(PersonasegError):
    """A model that cannot be found, loaded or is not supported."""

    exit_code = 3


class ConfigError(PersonasegError):
    """A bad recipe (TOML), unknown key, or out-of-range setting."""


class ConceptError(PersonasegError):
    """A personal concept that is unknown, exists already, or does not fit the model."""


class DatasetError(PersonasegError):
    """A benchmark dataset whose layout or files are wrong."""


class MissingExtraError(PersonasegError):
    """An optional feature whose extra is not installed."""

    def __init__(self, feature: str, extra: str):
        super().__init__(
            f"{feature} needs an optional dependency",
            hint=f"install it with: pip install 'personaseg[{extra}]'",
        )
