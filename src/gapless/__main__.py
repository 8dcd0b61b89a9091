"""``python -m gapless``: the command line (same as the ``gapless`` script)."""

from gapless.cli import main

main()
