"""Tables every verb prints: a Rich table on a terminal (long cells wrap, nothing is cut), a
Markdown table when piped or written to a file."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

#: errors from `peftbench.cli.main`: one line on stderr
err_console = Console(stderr=True)



@dataclass
class Grid:
    """A table of text cells that prints as a Rich table on a terminal (long cells wrap,
    nothing is cut off) and as a Markdown table when piped or written to a file."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""
    caption: str = ""
    #: indices of right-aligned columns (numbers)
    right: set[int] = field(default_factory=set)

    #: the narrowest a column may get on a terminal (Rich shrinks columns to nothing otherwise)
    MIN_COLUMN = 4

    def rich(self) -> Table:
        """The Rich table: every column folds long cells instead of cutting them."""
        table = Table(title=self.title or None, caption=self.caption or None)
        for index, header in enumerate(self.headers):
            table.add_column(header, justify="right" if index in self.right else "left",
                             overflow="fold", min_width=min(len(header), self.MIN_COLUMN) or 1)
        for row in self.rows:
            table.add_row(*row)
        return table

    def __rich__(self) -> Table:
        return self.rich()

    def min_width(self) -> int:
        """The fewest columns of text the Rich table needs: below it, cells would be cut."""
        widths = [min(len(h), self.MIN_COLUMN) or 1 for h in self.headers]
        return sum(widths) + 3 * len(widths) + 1  # a space each side, a border between

    def markdown(self, level: int = 0) -> str:
        """The table as Markdown: the title (a heading of ``level`` when above 0, else bold),
        the table, then the caption."""
        lines = []
        if self.title:
            lines += [("#" * level + " " if level else "**") + self.title
                      + ("" if level else "**"), ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in self.headers) + " |")
        lines.append("|" + "".join("---:|" if i in self.right else "---|"
                                   for i in range(len(self.headers))))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in self.rows]
        if self.caption:
            lines += ["", self.caption]
        return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def print_grid(grid: Grid, console: Console | None = None) -> None:
    """``grid`` on ``console`` (default stdout): a Rich table on a terminal wide enough for it,
    else Markdown (which no width cuts)."""
    console = console or Console()
    if console.is_terminal and console.width >= grid.min_width():
        console.print(grid.rich())
    else:
        console.file.write(grid.markdown())
        console.file.flush()

