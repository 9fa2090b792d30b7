"""Plain-text tables and notes for the terminal."""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from app.cli.backends import CliError


def note(text: str) -> None:
    """Where a command got its answer or what it made on the way, on stderr (stdout stays the answer itself)."""
    print(f'spendgauge: {text}', file=sys.stderr)


def table(rows: list[dict[str, Any]], columns: list[str], empty: str = '(no usage)') -> str:
    """Columns padded to their widest cell; numbers right-aligned with thousands separators."""
    if not rows:
        return empty
    cells = [[str(r[c]) if not isinstance(r[c], int) else f'{r[c]:,}' for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ['  '.join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ['  '.join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
              for row in cells]
    return '\n'.join(lines)


def write_out(chunks: Iterable[str], path: str | None, what: str) -> None:
    """The chunks to stdout, or into the file `path` and then `<what> written to <path>`; a file that cannot be
    written is a CliError. The first chunk comes before the file is made, so a refused request makes none."""
    parts = iter(chunks)
    first = next(parts, '')
    if not path:
        sys.stdout.write(first)
        sys.stdout.writelines(parts)
        return
    try:
        with open(path, 'w', newline='') as f:
            f.write(first)
            f.writelines(parts)
    except OSError as exc:
        raise CliError(f'cannot write {path}: {exc.strerror}') from None
    print(f'{what} written to {path}')
