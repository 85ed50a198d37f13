"""tuskit.rufh: the draft's structured fields and per-version rules, strict where RFC 9651 is."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from tuskit import rufh
from tuskit.errors import TusError


def _fails(status: int, fn: object, *args: object, **kwargs: object) -> TusError:
    with pytest.raises(TusError) as caught:
        fn(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.status == status
    return caught.value


# ---- routing: which requests are the draft's ---------------------------------------------------------

@pytest.mark.parametrize("value", ["3", "4", "5", "6", "7", "8", " 6 ", "006", "6;x=1"])
def test_served_interop_versions(value: str) -> None:
    assert rufh.interop_version(value) == int(value.split(";")[0])


@pytest.mark.parametrize("value", [None, "", "2", "9", "-6", '"6"', "6.0", "six", "6, 6", "+6", "0x6", "1" * 16])
def test_anything_else_is_tus(value: str | None) -> None:
    assert rufh.interop_version(value) is None


# ---- items ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [("?1", True), ("?0", False), (" ?1 ", True), ("?1;a=2", True)])
def test_booleans(value: str, expected: bool) -> None:
    assert rufh.parse_boolean(value, "Upload-Complete") is expected


@pytest.mark.parametrize("value", ["true", "1", "?true", '"?1"', "?", "?2", "?1,?1", "?1 x", "", "TRUE"])
def test_anything_else_is_not_a_boolean(value: str) -> None:
    err = _fails(400, rufh.parse_boolean, value, "Upload-Complete")
    assert "Upload-Complete" in err.message


def test_an_absent_boolean_is_none() -> None:
    assert rufh.parse_boolean(None, "Upload-Complete") is None


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("007", 7), ("11", 11), ("9" * 15, 10**15 - 1),
                                                 ("5;p", 5)])
def test_sizes(value: str, expected: int) -> None:
    assert rufh.parse_size(value, "Upload-Offset") == expected


@pytest.mark.parametrize("value", ["+5", "5.0", "0x10", "1" * 16, "-1", "5, 5", "5 5", "", "five", "٣", "1e3"])
def test_malformed_sizes_are_400_or_ignored_when_lenient(value: str) -> None:
    _fails(400, rufh.parse_size, value, "Upload-Offset")
    assert rufh.parse_size(value, "Upload-Offset", lenient=True) is None


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_every_fifteen_digit_size_round_trips(n: int) -> None:
    assert rufh.parse_size(str(n), "Upload-Length") == n


def test_items_of_every_type() -> None:
    assert rufh.parse_item('"a \\"b\\""') == ('a "b"', {})
    assert rufh.parse_item(":aGk=:;x=?0") == (b"hi", {"x": False})
    assert rufh.parse_item("tok/en") == (rufh.Token("tok/en"), {})
    assert rufh.parse_item("-1.5") == (-1.5, {})


# ---- dictionaries ----------------------------------------------------------------------------------------

def test_dictionaries() -> None:
    parsed = rufh.parse_dictionary("max-size=1024, min-size=0,max-age=5;x, flag, list=(1 2);p=?1")
    assert {k: v for k, (v, _) in parsed.items() if k != "list"} == {
        "max-size": 1024, "min-size": 0, "max-age": 5, "flag": True}
    assert parsed["max-age"][1] == {"x": True}
    assert parsed["list"] == ([(1, {}), (2, {})], {"p": True})
    assert rufh.parse_dictionary("") == {}


@pytest.mark.parametrize("value", ["a=1,", "A=1", "a=1 b=2", "a=(1", "=1", "a=1,,b=2", "a=?x"])
def test_malformed_dictionaries(value: str) -> None:
    with pytest.raises(rufh.FieldError):
        rufh.parse_dictionary(value)


def test_upload_limit_serialises_as_a_dictionary_of_integers() -> None:
    text = rufh.serialize_integers({"max-size": 1 << 30, "min-size": 0, "max-age": 86399})
    assert text == "max-size=1073741824, min-size=0, max-age=86399"
    assert {k: v for k, (v, _) in rufh.parse_dictionary(text).items()} == {
        "max-size": 1 << 30, "min-size": 0, "max-age": 86399}


# ---- RFC 9530 digests -----------------------------------------------------------------------------------

def _sf(digest: bytes) -> str:
    return ":" + base64.b64encode(digest).decode() + ":"


def test_digests_take_sha_256_and_sha_512_and_ignore_the_rest() -> None:
    d256, d512 = hashlib.sha256(b"x").digest(), hashlib.sha512(b"x").digest()
    value = f"md5={_sf(hashlib.md5(b'x').digest())}, sha-256={_sf(d256)}, sha-512={_sf(d512)}, foo=:AA==:"
    assert rufh.parse_digests(value, "Repr-Digest") == {"sha256": d256, "sha512": d512}
    assert rufh.parse_digests(None, "Repr-Digest") == {}


def test_a_digest_of_the_wrong_length_is_a_mismatch_and_a_malformed_one_400() -> None:
    _fails(460, rufh.parse_digests, f"sha-256={_sf(bytes(20))}", "Content-Digest")
    _fails(400, rufh.parse_digests, "sha-256=abc", "Content-Digest")
    _fails(400, rufh.parse_digests, "sha-256=:not base64:", "Content-Digest")


# ---- Content-Disposition ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ('attachment; filename="report.pdf"', "report.pdf"),
    ("inline; filename=plain.txt", "plain.txt"),
    ('attachment; filename="a \\"q\\".txt"', 'a "q".txt'),
    ("attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt", "€ rates.txt"),
    ("attachment; filename*=utf-8''na%C3%AFve.txt", "naïve.txt"),
    ("attachment", None), ("", None), (None, None),
    ("attachment; filename*=UTF-8''%FF", None),
])
def test_disposition_filename(value: str | None, expected: str | None) -> None:
    assert rufh.disposition_filename(value) == expected


# ---- the per-version rules -------------------------------------------------------------------------------

def test_completeness_fields_per_version() -> None:
    assert rufh.Draft(3).completeness(True) == ("Upload-Incomplete", "?0")
    assert rufh.Draft(3).completeness(False) == ("Upload-Incomplete", "?1")
    for version in range(4, 9):
        assert rufh.Draft(version).completeness(True) == ("Upload-Complete", "?1")
        assert rufh.Draft(version).completeness(False) == ("Upload-Complete", "?0")


@pytest.mark.parametrize("version", range(3, 9))
def test_reading_completeness(version: int) -> None:
    draft = rufh.Draft(version)
    for complete in (True, False):
        name, value = draft.completeness(complete)
        assert draft.read_complete(CaseInsensitiveDict({name: value}), append=True) is complete
    _fails(400, draft.read_complete, CaseInsensitiveDict(), append=False)  # creation must say
    if version <= 6:
        assert draft.read_complete(CaseInsensitiveDict(), append=True) is True  # absent: the body ends it
    else:
        _fails(400, draft.read_complete, CaseInsensitiveDict(), append=True)
    other = "Upload-Complete" if version == 3 else "Upload-Incomplete"
    _fails(400, draft.read_complete, CaseInsensitiveDict({other: "?0"}), append=False)  # the other spelling


def test_version_table() -> None:
    table = {v: rufh.Draft(v) for v in range(3, 9)}
    assert [v for v, d in table.items() if d.has_limits] == [6, 7, 8]
    assert [d.lifetime_key for v, d in table.items() if d.has_limits] == ["expires", "max-age", "max-age"]
    assert [v for v, d in table.items() if d.appends_are_partial_uploads] == [6, 7, 8]
    assert [v for v, d in table.items() if d.has_problem(rufh.MISMATCHING_OFFSET)] == [6, 7, 8]
    assert [v for v, d in table.items() if d.has_problem(rufh.COMPLETED_UPLOAD)] == [6, 7, 8]
    assert [v for v, d in table.items() if d.has_problem(rufh.INCONSISTENT_LENGTH)] == [7, 8]
    assert [d.append_status() for d in table.values()] == [201, 201, 201, 201, 204, 204]
    assert table[3].strays_on_head_and_delete == ("Upload-Offset", "Upload-Incomplete")
    assert table[5].strays_on_head_and_delete == ("Upload-Offset", "Upload-Complete")
    assert table[6].strays_on_head_and_delete == ("Upload-Offset", "Upload-Complete", "Upload-Length")
    assert table[7].strays_on_head_and_delete == table[8].strays_on_head_and_delete == ()
    assert [v for v, d in table.items() if d.lenient] == [8]
