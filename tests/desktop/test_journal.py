"""The journal: versions, supersession, lookups, and that it survives a reopen (a restart)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuskit.desktop.engine.journal import Journal, NewVersion
from tuskit.desktop.engine.states import SUPERSEDED

S = "http://127.0.0.1:1/files/"


def test_new_version_supersedes_unfinished_one_but_keeps_finished_history(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    [v1] = j.add_versions(S, [NewVersion("/r", "/r/a", 10, 1)])
    assert v1.state == "queued" and v1.current
    [v2] = j.add_versions(S, [NewVersion("/r", "/r/a", 20, 2)])
    assert j.get(v1.id).state == SUPERSEDED and not j.get(v1.id).current  # type: ignore[union-attr]
    j.update(v2.id, state="done", sha256="ab" * 32, url="http://x/1", offset=20)
    [v3] = j.add_versions(S, [NewVersion("/r", "/r/a", 30, 3)])
    assert j.get(v2.id).state == "done"  # type: ignore[union-attr]
    assert j.current(S, "/r/a") == v3
    assert j.known_stats(S) == {"/r/a": (30, 3)}
    assert j.uploaded_before(S, "/r/a", "ab" * 32).id == v2.id  # type: ignore[union-attr]
    assert j.uploaded_before(S, "/r/b", "ab" * 32) is None
    assert j.uploaded_before("http://other/", "/r/a", "ab" * 32) is None


def test_rows_survive_a_reopen_with_their_url_and_offset(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    rows = j.add_versions(S, [NewVersion("/r", f"/r/{i}", i, i) for i in range(100)])
    j.update(rows[5].id, state="uploading", url="http://x/5", offset=3)
    j.close()
    again = Journal(tmp_path / "j.db")
    assert len(again.current_rows(S)) == 100
    [row] = again.current_rows(S, ["uploading"])
    assert (row.path, row.url, row.offset) == ("/r/5", "http://x/5", 3)
    assert again.current_rows("http://elsewhere/") == []


def test_only_known_columns_are_updatable(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    [v] = j.add_versions(S, [NewVersion("/r", "/r/a", 1, 1)])
    with pytest.raises(ValueError):
        j.update(v.id, path="/elsewhere")
