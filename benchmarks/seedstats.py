"""The one cell format of the benchmark tables over seeds (eval_table, shapes_table, refine_table)."""
from __future__ import annotations

import statistics


def spread(values: list[float], fmt: str) -> str:
    """mean ± std over seeds in `fmt` (e.g. ".3f"); a single seed is shown alone: it has no spread."""
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{statistics.fmean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"
