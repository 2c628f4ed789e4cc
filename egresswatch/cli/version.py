"""What `egresswatch --version` prints: the program's version and its destination catalog's date."""

import re

from egresswatch import __version__

_CATALOG_DATE = re.compile(r"^#\s*catalog-date:\s*(\d{4}-\d{2}-\d{2})", re.MULTILINE)


def catalog_date(catalog_text: str) -> str | None:
    """The `# catalog-date: YYYY-MM-DD` line of a catalog CSV, or None when it has none."""
    found = _CATALOG_DATE.search(catalog_text)
    return found.group(1) if found else None


def version_line() -> str:
    """`egresswatch 0.1.0 (catalog 2026-12-04)`."""
    from egresswatch.classify.catalog import packaged_catalog_text

    date = catalog_date(packaged_catalog_text()) or "undated"
    return f"egresswatch {__version__} (catalog {date})"
