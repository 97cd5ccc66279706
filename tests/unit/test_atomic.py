"""The atomic write helper: whole new content or the old file, and no temporary files left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.atomic import replacing, write_atomic


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_replaces_the_file(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    write_atomic(target, "새 내용", durable=durable)
    assert target.read_text(encoding="utf-8") == "새 내용"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_replacing_creates_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("x")
    assert target.read_text() == "x"
