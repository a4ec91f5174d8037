"""`python -m fci.store verify|repair DIR`: see `fci.store.cli`."""

import sys

from fci.store.cli import main

if __name__ == "__main__":
    sys.exit(main())
