"""Ignore rules and the scanner that applies them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuskit.desktop.watch.ignore import DEFAULT_IGNORES, IgnoreRules
from tuskit.desktop.watch.scanner import scan


@pytest.mark.parametrize("name", ["film.mkv.part", "x.crdownload", "a.tmp", ".notes.txt.swp", "~$report.docx",
                                  ".~lock.sheet.ods#", "draft.txt~", ".goutputstream-ABC123", "4913", ".DS_Store"])
def test_default_temporaries_are_ignored(tmp_path: Path, name: str) -> None:
    assert IgnoreRules().ignores(tmp_path, tmp_path / name)
    assert IgnoreRules().ignores(tmp_path, tmp_path / "sub" / name)


@pytest.mark.parametrize("name", ["photo.jpg", "4914", "report.docx", "partial.txt", "tmp.txt"])
def test_ordinary_names_are_uploaded(tmp_path: Path, name: str) -> None:
    assert not IgnoreRules().ignores(tmp_path, tmp_path / name)


def test_hidden_policy_and_user_globs(tmp_path: Path) -> None:
    rules = IgnoreRules(["*.bak", "cache/*", "node_modules"])
    assert rules.ignores(tmp_path, tmp_path / ".git" / "config")
    assert rules.ignores(tmp_path, tmp_path / ".env")
    assert rules.ignores(tmp_path, tmp_path / "old.bak")
    assert rules.ignores(tmp_path, tmp_path / "cache" / "deep" / "x.jpg")
    assert rules.ignores(tmp_path, tmp_path / "a" / "node_modules" / "x.js")
    assert not rules.ignores(tmp_path, tmp_path / "a" / "cache" / "x.jpg")  # '/' globs are relative to the root
    assert rules.ignores(tmp_path, tmp_path.parent / "elsewhere.jpg")
    assert not IgnoreRules(include_hidden=True).ignores(tmp_path, tmp_path / ".env")
    assert len(DEFAULT_IGNORES) == 10


def test_scan_prunes_ignored_folders_and_skips_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    (tmp_path / "skip").mkdir()
    for rel in ["top.jpg", "a/one.txt", "a/b/two.txt", "a/b/two.txt.part", ".git/HEAD", "skip/x.jpg"]:
        (tmp_path / rel).write_bytes(b"data")
    os.symlink(tmp_path / "top.jpg", tmp_path / "link.jpg")
    os.symlink(tmp_path / "a", tmp_path / "linkdir")
    found = {Path(p).relative_to(tmp_path).as_posix(): size for p, size, _ in scan(tmp_path, IgnoreRules(["skip/*"]))}
    assert found == {"top.jpg": 4, "a/one.txt": 4, "a/b/two.txt": 4}
    only_a = {Path(p).name for p, _, _ in scan(tmp_path, IgnoreRules(), start=tmp_path / "a")}
    assert only_a == {"one.txt", "two.txt"}
