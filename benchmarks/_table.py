"""Markdown tables for benchmark output, without extra dependencies."""

from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame, *, index: bool = True) -> str:
    frame = frame.reset_index() if index else frame
    header = [str(c) for c in frame.columns]
    rows = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
