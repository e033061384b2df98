"""`python -m fluo` runs the command line."""

from fluo.cli import main

if __name__ == "__main__":  # not when Dask's worker processes re-import __main__
    main()
