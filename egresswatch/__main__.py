"""`python -m egresswatch`."""

from egresswatch.cli.main import main

main()
