"""The default store path: choosing it never creates anything (reading commands must not)."""

from pathlib import Path

from egresswatch.store import engine


def test_a_missing_directory_under_a_writable_one_counts_as_writable_but_is_not_made(
    tmp_path: Path,
) -> None:
    target = tmp_path / "var" / "lib" / "egresswatch"
    assert engine._writable_dir(target)
    assert not (tmp_path / "var").exists()


def test_a_file_in_the_way_is_not_a_writable_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert not engine._writable_dir(tmp_path / "file")
