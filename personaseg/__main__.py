"""``python -m personaseg`` (and ``accelerate launch -m personaseg ...``)."""

from .cli.app import main

if __name__ == "__main__":
    main()
