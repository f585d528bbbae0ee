"""The one exception type for user mistakes (bad recipe, missing file, wrong checkpoint).

The CLI prints `str(error)` as one red line and exits with code 2; programming errors keep their traceback.
Messages say what is wrong *and* what to do, e.g. "recipes/x.yaml: no such file (list recipes with `ls recipes/`)".
"""
from __future__ import annotations


class FalError(Exception):
    """A user-facing error: one line, says what to do. Never raised for programming bugs."""
