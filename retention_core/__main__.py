"""``python -m retention_core`` is the ``retention`` command."""

from .cli import main

main()
