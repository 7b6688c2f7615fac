"""The one atomic-write helper: a whole new file or the old one, and no temporary left behind either way."""

from __future__ import annotations

import pytest

from classaudit.atomic import atomic_open, atomic_write, staged, temporary_name


def test_atomic_write_replaces_the_whole_file(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    atomic_write(target, "new text")
    assert target.read_text() == "new text" and list(tmp_path.iterdir()) == [target]
    atomic_write(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"


def test_an_error_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_open(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_staged_leaves_a_durable_temporary_for_the_caller_to_rename(tmp_path):
    target = tmp_path / "page.html"
    with staged(target) as f:
        f.write(b"<html>")
    assert not target.exists() and temporary_name(target).read_bytes() == b"<html>"
    with pytest.raises(KeyError):
        with staged(tmp_path / "other.csv") as f:
            raise KeyError("x")
    assert not temporary_name(tmp_path / "other.csv").exists()
