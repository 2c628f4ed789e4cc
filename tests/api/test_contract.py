"""The layers stay honest: an AST walk of every module's imports (transitively, in-package)."""

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "egresswatch"


def module_path(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def direct_imports(name: str) -> frozenset[str]:
    path = module_path(name)
    if path is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return frozenset(found)


def reachable(name: str) -> set[str]:
    """Every module `name` imports, directly or through egresswatch modules."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for imported in direct_imports(todo.pop()):
            if imported not in seen:
                seen.add(imported)
                if imported.startswith("egresswatch") and module_path(imported):
                    todo.append(imported)
    return seen


def modules(package: str) -> list[str]:
    root = PACKAGE / package
    return [
        "egresswatch."
        + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted(root.rglob("*.py"))
    ]


def hits(name: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in reachable(name) if m.startswith(forbidden))


IO_LAYERS = ("egresswatch.store", "egresswatch.capture", "egresswatch.attribute",
             "egresswatch.api", "egresswatch.cli", "egresswatch.daemon", "sqlalchemy",
             "fastapi", "psutil")  # fmt: skip


@pytest.mark.parametrize("name", modules("decode") + modules("classify"))
def test_decode_and_classify_import_no_io_layer(name: str) -> None:
    assert hits(name, IO_LAYERS) == []


@pytest.mark.parametrize("name", modules("store"))
def test_store_imports_neither_cli_nor_output(name: str) -> None:
    assert hits(name, ("egresswatch.cli", "egresswatch.output", "rich", "egresswatch.api")) == []


@pytest.mark.parametrize("name", modules("api"))
def test_web_layer_imports_no_capture_or_attribution(name: str) -> None:
    forbidden = ("egresswatch.capture", "egresswatch.attribute", "egresswatch.agent",
                 "egresswatch.daemon", "egresswatch.decode", "egresswatch.pipeline",
                 "egresswatch.cli", "scapy", "pyroute2", "psutil")  # fmt: skip
    assert hits(name, forbidden) == []


def test_the_walk_sees_indirect_imports() -> None:
    # Guards the tests above: the daemon reaches capture only through other modules too.
    assert "egresswatch.capture.live" in reachable("egresswatch.daemon")
    assert "rich.markup" in reachable("egresswatch.doctor")


def private_imports(name: str) -> list[str]:
    """`from egresswatch.X import _name` in module `name`: another module's private helper."""
    path = module_path(name)
    assert path is not None
    return sorted(
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("egresswatch")
        for alias in node.names
        if alias.name.startswith("_")
    )


@pytest.mark.parametrize("name", modules("store"))
def test_store_modules_use_no_private_helper_of_another(name: str) -> None:
    assert private_imports(name) == []


CODEC = ("flag", "pack_flags", "unpack_ports")


def test_the_row_mapping_lives_in_rows_only() -> None:
    # Ingest, the readers, export and the views all map rows through store.rows, and the
    # mapping's model types (the flag codes' decoders, ProcessRef) are used nowhere else in store.
    users = ("ingest", "queries", "reads", "views", "summaries", "alerts", "sessions")
    for name in users:
        assert "egresswatch.store.rows" in direct_imports(f"egresswatch.store.{name}"), name
    for name in modules("store"):
        if name != "egresswatch.store.rows":
            codec = {f"egresswatch.store.schema.{f}" for f in CODEC}
            assert not codec & direct_imports(name), name
    assert private_imports("egresswatch.store.reads") == []  # it once reused queries' helpers
