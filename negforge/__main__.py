"""``python -m negforge`` is the ``negforge`` command."""

from .synth.cli import main

if __name__ == "__main__":
    main()
