"""``python -m crossfed`` runs the command line."""

from crossfed.cli import main

main()
