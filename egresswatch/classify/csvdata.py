"""Reads the CSV data files (catalog, tool rules): comments, header check, true line numbers."""

import csv
from collections.abc import Iterable, Iterator

from egresswatch.errors import ConfigError


def data_rows(
    text: str, origin: str, header: tuple[str, ...], what: str
) -> Iterator[tuple[str, list[str]]]:
    """Each data row after the header, with its "<origin>:<line>" for error messages.

    Raises:
        ConfigError: "<origin>:<line>: <problem>" for a bad header, bad CSV or an empty file.
    """
    reader = csv.reader(_uncommented(text.splitlines()), strict=True)
    header_seen = False
    try:
        for fields in reader:
            if not fields:
                continue
            where = f"{origin}:{reader.line_num}"
            if header_seen:
                yield where, fields
            elif tuple(f.strip() for f in fields) == header:
                header_seen = True
            else:
                raise ConfigError(f"{where}: expected header {','.join(header)}")
    except csv.Error as exc:
        raise ConfigError(f"{origin}:{reader.line_num}: bad CSV: {exc}") from exc
    if not header_seen:
        raise ConfigError(f"{origin}:1: empty {what} (expected header {','.join(header)})")


def _uncommented(lines: Iterable[str]) -> Iterator[str]:
    # Blank out comment lines instead of dropping them so csv line numbers stay true.
    for line in lines:
        yield "" if line.lstrip().startswith("#") else line
