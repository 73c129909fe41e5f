"""``python -m primage`` is the ``primage`` command."""

from primage.cli.main import main

main()
