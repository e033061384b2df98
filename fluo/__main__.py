"""`python -m fluo` runs the command line."""

from fluo.cli import main

main()
