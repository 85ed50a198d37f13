"""Client-given names for --publish-dir: what may become a path under DIR, and what is refused."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuskit import protocol
from tuskit.server.core.model import DONE, Upload
from tuskit.server.media.publish_dir import (
    ANONYMOUS,
    MAX_SEGMENT_BYTES,
    UnsafeName,
    candidates,
    owner_folder,
    published_path,
    safe_relative_path,
)

FAMILY = "family \U0001f468\u200d\U0001f469\u200d\U0001f467.png"


@pytest.mark.parametrize(("name", "segments"), [
    ("photo.jpg", ("photo.jpg",)),
    ("holiday/day 1/photo.jpg", ("holiday", "day 1", "photo.jpg")),
    (".bashrc", (".bashrc",)),
    ("a..b/c...", ("a..b", "c...")),  # dots inside names are not traversal
    ("12:30 notes.txt", ("12:30 notes.txt",)),  # a colon is a drive letter only at the start
    ("Ünïcödé/日本語.txt", ("Ünïcödé", "日本語.txt")),
    (FAMILY, (FAMILY,)),  # joiners inside emoji are not control characters
    ("x" * MAX_SEGMENT_BYTES, ("x" * MAX_SEGMENT_BYTES,)),
])
def test_safe_names_keep_their_segments(name: str, segments: tuple[str, ...]) -> None:
    assert safe_relative_path(name) == segments


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("//server/share/x", "absolute"),
    ("..", "not a name"),
    ("../secret", "not a name"),
    ("a/../../b", "not a name"),
    ("a/./b", "not a name"),
    ("a//b", "not a name"),
    ("a/", "not a name"),
    ("C:\\Windows\\win.ini", "drive letter"),
    ("c:evil.txt", "drive letter"),
    ("C:/x", "drive letter"),
    ("dir\\..\\x", "backslash"),
    ("nul\x00byte", "U+0000"),
    ("line\nbreak", "U+000A"),
    ("tab\there", "U+0009"),
    ("bell\x07", "U+0007"),
    ("del\x7f", "U+007F"),
    ("c1\x85", "U+0085"),
    ("photo\u202egpj.exe", "U+202E"),
    ("iso\u2066late", "U+2066"),
    ("para\u2029sep", "U+2029"),
    ("x" * (MAX_SEGMENT_BYTES + 1), "longer than"),
    ("é" * (MAX_SEGMENT_BYTES // 2 + 1), "longer than"),  # bytes, not characters
    ("/".join(["abcdefgh"] * 120), "path longer than"),
])
def test_unsafe_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(UnsafeName, match=re.escape(why)):
        safe_relative_path(name)


def test_names_are_normalised_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "café/résumé.txt")
    assert decomposed != "café/résumé.txt"
    assert safe_relative_path(decomposed) == ("café", "résumé.txt")


@given(st.text(max_size=80))
def test_no_name_escapes_the_folder(name: str) -> None:
    """Whatever a client sends, an accepted name stays below the folder it is joined to."""
    try:
        segments = safe_relative_path(name)
    except UnsafeName:
        return
    root = Path("/publish/owner")
    joined = Path(os.path.normpath(root.joinpath(*segments)))
    assert joined.is_relative_to(root) and joined != root
    assert all(s not in ("", ".", "..") and "/" not in s and "\x00" not in s for s in segments)


def test_suffixes_keep_the_extension() -> None:
    assert list(zip(range(3), candidates("photo.jpg"), strict=False)) == [(0, "photo.jpg"), (1, "photo (1).jpg"),
                                                                           (2, "photo (2).jpg")]
    assert [c for _, c in zip(range(2), candidates(".bashrc"), strict=False)] == [".bashrc", ".bashrc (1)"]
    assert [c for _, c in zip(range(2), candidates("README"), strict=False)] == ["README", "README (1)"]
    assert [c for _, c in zip(range(2), candidates("a.tar.gz"), strict=False)] == ["a.tar.gz", "a.tar (1).gz"]


def _upload(owner: str, **metadata: str) -> Upload:
    meta = protocol.encode_metadata({k: v.encode() for k, v in metadata.items()})
    return Upload(id="a" * 32, offset=1, length=1, metadata=meta, concat="", parts=(), owner=owner, created=0.0,
                  expires=None, status=DONE, sha256="", reason="", finished=0.0)


def test_the_published_path_prefers_the_relative_path_then_the_filename_then_the_id() -> None:
    assert published_path(_upload("alice", filename="b.txt", relativePath="docs/b.txt")) == ("alice", "docs", "b.txt")
    assert published_path(_upload("alice", filename="b.txt")) == ("alice", "b.txt")
    assert published_path(_upload("", filename="b.txt", relativePath="null")) == (ANONYMOUS, "b.txt")
    assert published_path(_upload("")) == (ANONYMOUS, "a" * 32)
    with pytest.raises(UnsafeName, match="filename with '/'"):
        published_path(_upload("alice", filename="docs/b.txt"))
    with pytest.raises(UnsafeName):
        published_path(_upload("alice", filename="b.txt", relativePath="../b.txt"))  # never a silent fallback
    with pytest.raises(UnsafeName):
        owner_folder("..")
