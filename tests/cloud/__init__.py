"""Cloud tests: a package, so its conftest loads as ``cloud.conftest`` and never shadows ``tests/conftest.py``."""
