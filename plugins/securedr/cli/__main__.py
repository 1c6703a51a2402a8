"""``python -m securedr.cli``: the same as the ``securedr`` command."""

import sys

from securedr.cli import main

if __name__ == "__main__":
    sys.exit(main())
