"""Repository-wide pytest set-up: notebooks run in fast mode, torch stays on one thread per worker."""

import os

os.environ.setdefault("LABKIT_FAST", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")
