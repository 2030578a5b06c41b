"""Run the command line interface: ``python -m sk_hierclust``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
