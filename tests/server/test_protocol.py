"""tuskit.protocol: every header parser, strict where the spec is, lenient where real clients are not."""

from __future__ import annotations

import base64
import hashlib
import re
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuskit import errors, protocol
from tuskit.errors import TusError


def _fails(status: int, code: str, fn: object, *args: object) -> TusError:
    with pytest.raises(TusError) as caught:
        fn(*args)  # type: ignore[operator]
    assert (caught.value.status, caught.value.code) == (status, code)
    return caught.value


# ---- version --------------------------------------------------------------------------------------

def test_supported_version_passes() -> None:
    protocol.check_version("1.0.0")


@pytest.mark.parametrize("value", [None, "", "0.2.2", "1.0", "1.0.0 ", "2.0.0"])
def test_other_versions_are_412_with_tus_version(value: str | None) -> None:
    err = _fails(412, "ERR_UNSUPPORTED_VERSION", protocol.check_version, value)
    assert err.headers == {"Tus-Version": "1.0.0"}


# ---- offsets and lengths --------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "1", "007", str(2**63 - 1)])
def test_offsets_and_lengths_accept_non_negative_integers(value: str) -> None:
    assert protocol.parse_offset(value) == int(value)
    assert protocol.parse_length(value) == int(value)


@pytest.mark.parametrize("value", [None, "", "-1", "+1", "1.0", "1e3", " 1", "0x10", str(2**63), "1" * 20, "٣"])
def test_malformed_offsets_and_lengths_are_400(value: str | None) -> None:
    _fails(400, "ERR_INVALID_OFFSET", protocol.parse_offset, value)
    _fails(400, "ERR_INVALID_UPLOAD_LENGTH", protocol.parse_length, value)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_offset_round_trips(n: int) -> None:
    assert protocol.parse_offset(str(n)) == n


def test_defer_length_is_1_or_absent() -> None:
    assert protocol.parse_defer_length(None) is False
    assert protocol.parse_defer_length("1") is True
    for bad in ("0", "true", "", " 1"):
        _fails(400, "ERR_INVALID_UPLOAD_LENGTH", protocol.parse_defer_length, bad)


# ---- metadata -------------------------------------------------------------------------------------

def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_metadata_decodes_values_and_key_only_entries() -> None:
    header = f"filename {_b64(b'a b.txt')},is_confidential,empty ,type {_b64(b'text/plain')}"
    assert protocol.parse_metadata(header) == {
        "filename": b"a b.txt", "is_confidential": None, "empty": None, "type": b"text/plain"}


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_or_empty_metadata_is_empty(header: str | None) -> None:
    # tuspy sends "Upload-Metadata: " when it has no metadata
    assert protocol.parse_metadata(header) == {}


def test_metadata_tolerates_spaces_around_entries() -> None:
    # tus-js-client writes "key " (trailing space) for an empty value
    assert protocol.parse_metadata(f" a {_b64(b'1')} , b ") == {"a": b"1", "b": None}


@pytest.mark.parametrize("header", [
    "name !!!",  # not base64
    "name YQ",  # unpadded
    f"name {_b64(b'x')} extra",  # three fields
    f"name  {_b64(b'x')}",  # two spaces
    f"a {_b64(b'1')},a {_b64(b'2')}",  # duplicate key
    "a,a",  # duplicate key-only
    f"a {_b64(b'1')},",  # empty entry
    ",a",
    "k\u00e9y YQ==",  # non-ASCII key
    "k\ty YQ==",  # control character in key
])
def test_malformed_metadata_is_400(header: str) -> None:
    _fails(400, "ERR_INVALID_METADATA", protocol.parse_metadata, header)


_keys = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=","),
                min_size=1, max_size=12)


@given(st.dictionaries(_keys, st.one_of(st.none(), st.binary(min_size=1, max_size=40)), max_size=6))
def test_metadata_round_trips(metadata: dict[str, bytes | None]) -> None:
    assert protocol.parse_metadata(protocol.encode_metadata(metadata)) == metadata


def test_metadata_text_is_utf8_or_none() -> None:
    meta = {"a": "é".encode(), "b": b"\xff", "c": None, "d": b""}
    assert protocol.metadata_text(meta, "a") == "é"
    assert [protocol.metadata_text(meta, k) for k in ("b", "c", "d", "missing")] == [None] * 4


# ---- checksums ------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5", "sha512", "SHA256"])
def test_checksum_parses_every_advertised_algorithm(algorithm: str) -> None:
    digest = hashlib.new(algorithm.lower(), b"chunk").digest()
    assert protocol.parse_checksum(f"{algorithm} {_b64(digest)}") == (algorithm.lower(), digest)


@pytest.mark.parametrize("header", ["crc32 AAAAAA==", "sha3-256 " + _b64(bytes(32)), "blake2b " + _b64(bytes(64))])
def test_unknown_checksum_algorithm_is_400(header: str) -> None:
    err = _fails(400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", protocol.parse_checksum, header)
    assert "sha1" in err.message


@pytest.mark.parametrize("header", [
    "", "sha1", "sha1 ", f"sha1  {_b64(bytes(20))}", "sha1 not*base64", f"sha1 {_b64(bytes(20))} extra",
])
def test_malformed_checksum_is_400(header: str) -> None:
    _fails(400, "ERR_INVALID_CHECKSUM", protocol.parse_checksum, header)


@pytest.mark.parametrize("header", [f"sha1 {_b64(bytes(19))}", f"sha256 {_b64(bytes(20))}", f"md5 {_b64(bytes(20))}"])
def test_a_digest_of_the_wrong_length_is_a_mismatch(header: str) -> None:
    """Well-formed but no chunk can hash to it: 460, as tusd answers, not a malformed-header 400."""
    _fails(460, "ERR_CHECKSUM_MISMATCH", protocol.parse_checksum, header)


def test_advertised_checksum_algorithms_are_the_spec_names() -> None:
    assert set(protocol.CHECKSUM_ALGORITHMS) == {"sha1", "sha256", "md5", "sha512"}


# ---- concatenation --------------------------------------------------------------------------------

def test_concat_partial_and_final() -> None:
    assert protocol.parse_concat(None) is None
    assert protocol.parse_concat("partial") == protocol.Concat("partial")
    assert protocol.parse_concat(" partial ") == protocol.Concat("partial")
    assert protocol.parse_concat("final;/files/a http://h/files/b") == protocol.Concat(
        "final", ("/files/a", "http://h/files/b"))
    assert protocol.parse_concat("final; /files/a  /files/b ") == protocol.Concat("final", ("/files/a", "/files/b"))


@pytest.mark.parametrize("header", ["", "final", "final;", "final; ", "partial;x", "Final;/files/a", "merge"])
def test_malformed_concat_is_400(header: str) -> None:
    _fails(400, "ERR_INVALID_CONCAT", protocol.parse_concat, header)


# ---- dates and advertised extensions --------------------------------------------------------------

def test_http_date_is_imf_fixdate() -> None:
    text = protocol.http_date(1_795_000_000.5)
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", text)
    assert parsedate_to_datetime(text).timestamp() == 1_795_000_000


def test_every_required_extension_is_advertised() -> None:
    assert set(protocol.EXTENSIONS) >= {
        "creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum", "checksum-trailer",
        "termination", "concatenation", "concatenation-unfinished"}


def test_errors_are_raisable_values() -> None:
    err = errors.UPLOAD_LOCKED("busy")
    assert (err.status, err.code, err.message) == (423, "ERR_UPLOAD_LOCKED", "busy")
