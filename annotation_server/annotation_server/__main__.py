"""Entry point: `python -m annotation_server --data-dir DIR --host 127.0.0.1 --port PORT` (see launcher.py)."""

import sys

from annotation_server.launcher import main

if __name__ == "__main__":
    sys.exit(main())
