"""The one CSV and Markdown writer every export uses (sessions.csv, `spendgauge get-usage --format csv`, reports),
so text from callers (agent, session, model and task ids, tags, titles) is harmless wherever it is opened.

CSV (OWASP's CSV injection advice): a text cell whose first non-blank character is `=`, `+`, `-`, `@`, a tab or a
carriage return gets a leading single quote, so a spreadsheet shows it as text and never runs it as a formula. Two
deliberate exceptions: numbers we write as numbers (int, Decimal) are written as they are, and a text cell that is
wholly a plain decimal number (`-12.50`, a fall in spend) stays as it is, because a spreadsheet reads it as a number
and it cannot hold a formula. Every other cell that starts so, an agent named `=HYPERLINK(...)` or `-1+2`, is
neutralised; a reader that wants the original drops one leading quote from such cells. Line breaks inside a cell
are written as `\n` (a bare `\r` would otherwise end the row early in some readers).

Markdown: `\\`, the link and image syntax `[`, `]`, `(`, `)`, `!`, HTML's `<` and `>`, the table's `|`, and the
emphasis and code marks `*`, `_` and backticks are escaped with a backslash (CommonMark escapes) and line breaks
become spaces, so a value can neither make a link or an image, nor inject HTML, nor break the table; it reads back
by removing the backslashes.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

FORMULA_START = ('=', '+', '-', '@', '\t', '\r')
PLAIN_NUMBER = re.compile(r'-?\d+(\.\d+)?')
_MD_SPECIAL = re.compile(r'([\\`*_\[\]()!<>|])')
Value = str | int | Decimal | None


def neutralise(text: str) -> str:
    """A text cell a spreadsheet would read as a formula gets a leading single quote; plain numbers are left alone."""
    if text.lstrip(' ').startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_cell(value: Value) -> str:
    """A cell as CSV text: None is empty, numbers as they are (we wrote them), text neutralised."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int | Decimal):
        return str(value)
    # a bare carriage return is not quoted by the csv module (its line end is '\n') and would split the row
    return neutralise(str(value)).replace('\r\n', '\n').replace('\r', '\n')


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Value]]) -> str:
    """A whole CSV file: the header, then one line per row, every cell through `csv_cell`."""
    return csv_lines([header, *rows])


def csv_lines(rows: Iterable[Sequence[Value]]) -> str:
    """Rows as CSV lines (a part of a file streamed in parts), every cell through `csv_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def md_escape(text: str) -> str:
    """Text safe inside Markdown, and inside a Markdown table cell."""
    return _MD_SPECIAL.sub(r'\\\1', ' '.join(text.splitlines()))
