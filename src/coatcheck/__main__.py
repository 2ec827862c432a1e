"""`python -m coatcheck`: the same command as `coatcheck`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
