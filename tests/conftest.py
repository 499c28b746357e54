"""Root test configuration: kept minimal. Makes ``tests/support.py`` importable as
``support`` whatever pytest's import mode; integration fixtures live in
``tests/integration/conftest.py``."""

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
