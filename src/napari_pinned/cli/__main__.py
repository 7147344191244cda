"""``python -m napari_pinned.cli``: the ``napari-pinned`` command."""

import sys

from napari_pinned.cli.entry import main

if __name__ == "__main__":  # not when imported (tests import every module)
    sys.exit(main())
