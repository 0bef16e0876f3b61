"""Column alignment as Go's text/tabwriter does it for docker (minwidth 10, padding 3, spaces).

A cell is column-aligned only if a tab ends it; the last cell of a line is printed as is. The
width of a column is computed over each run of consecutive lines that have that column.
"""

from __future__ import annotations

MIN_WIDTH = 10
PADDING = 3


def align(text: str, min_width: int = MIN_WIDTH, padding: int = PADDING) -> str:
    lines = text.split("\n")
    cells = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[0] * (len(row) - 1) for row in cells]
    max_cols = max((len(row) - 1 for row in cells), default=0)
    for col in range(max_cols):
        start = 0
        while start < len(cells):
            if len(cells[start]) - 1 <= col:
                start += 1
                continue
            end = start
            while end < len(cells) and len(cells[end]) - 1 > col:
                end += 1
            width = max(min_width, max(len(cells[i][col]) + padding for i in range(start, end)))
            for i in range(start, end):
                widths[i][col] = width
            start = end
    out = []
    for row, row_widths in zip(cells, widths, strict=True):
        out.append("".join(cell.ljust(w) for cell, w in zip(row, row_widths, strict=False)) + row[-1])
    return "\n".join(out)
