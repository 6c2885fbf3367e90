"""``python -m seglab.cli``: the same entry point as the ``seglab`` command."""

from seglab.cli import main

main()
