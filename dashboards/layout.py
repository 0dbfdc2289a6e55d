"""Grid layout for Grafana panels: rows of panels placed left to right on the 24-column grid.

Pure: sizes in, positions out. Grafana does not reject overlapping ``gridPos``; it silently
pushes panels around, so the generator places every panel itself and a test checks the result.
"""

from __future__ import annotations

from dataclasses import dataclass

GRID_WIDTH = 24
ROW_HEIGHT = 1


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def overlaps(self, other: Box) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )


@dataclass(frozen=True)
class Size:
    w: int
    h: int


def place_rows(rows: list[list[Size]]) -> list[tuple[Box, list[Box]]]:
    """One row header box and the panel boxes below it, for every row.

    Panels fill a line left to right and wrap to a new line when the next one does not fit; a
    line is as tall as its tallest panel.
    """
    out: list[tuple[Box, list[Box]]] = []
    y = 0
    for sizes in rows:
        header = Box(0, y, GRID_WIDTH, ROW_HEIGHT)
        y += ROW_HEIGHT
        boxes: list[Box] = []
        x, line_height = 0, 0
        for size in sizes:
            if not 1 <= size.w <= GRID_WIDTH or size.h < 1:
                raise ValueError(f"panel size {size} does not fit a {GRID_WIDTH}-column grid")
            if x + size.w > GRID_WIDTH:
                y += line_height
                x, line_height = 0, 0
            boxes.append(Box(x, y, size.w, size.h))
            x += size.w
            line_height = max(line_height, size.h)
        y += line_height
        out.append((header, boxes))
    return out
