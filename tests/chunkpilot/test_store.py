"""One contract suite for every Store (local folder, S3 over real HTTP), fsspec-style,
then S3-only tests that push boto3 through a fault-injecting proxy."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.store import LocalStore, Store, open_store
from chunkpilot.store.s3 import S3Store, reset_clients
from tests.s3server import CUT, INTERNAL, LOST_WRITE, RESET, SLOWDOWN, FaultProxy, closed_loopback_port

BINARY = bytes(range(256)) * 4


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same store contract, run against each implementation."""
    if request.param == "local":
        return LocalStore(tmp_path / "runs")
    return open_store(request.getfixturevalue("s3_store_uri"))


def keys(store: Store, prefix: str = "") -> list[str]:
    """The listing's keys, checked to be exactly what ``Store.keys`` gives."""
    listed = [info.key for info in store.list(prefix)]
    assert list(store.keys(prefix)) == listed
    return listed


# -- the contract ------------------------------------------------------------------
def test_put_file_stores_a_local_file_whole(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(BINARY * 3000)  # ~3 MB: several multipart parts? no, but a streamed upload
    store.put_file("results/out.jsonl", str(source))
    assert store.get("results/out.jsonl") == BINARY * 3000
    assert [k for k in keys(store) if k.startswith("results/")] == ["results/out.jsonl"]


def test_put_then_get_returns_the_same_bytes(store: Store) -> None:
    store.put("run.json", BINARY)
    assert store.get("run.json") == BINARY
    store.put("deep/er/key.bin", b"")
    assert store.get("deep/er/key.bin") == b""


def test_put_overwrites_atomically(store: Store) -> None:
    old, new = b"a" * 200_000, b"b" * 300_000
    store.put("k", old)
    seen: list[bytes] = []

    def read_while_writing() -> None:
        for _ in range(15):
            seen.append(store.get("k"))

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    for i in range(15):
        store.put("k", new if i % 2 == 0 else old)
    reader.join()
    assert all(data in (old, new) for data in seen)  # never torn, never a mix
    store.put("k", new)
    assert store.get("k") == new


def test_missing_key_raises_not_found(store: Store) -> None:
    for read in (store.get, store.head, store.open, lambda k: store.get_range(k, 0, 10)):
        with pytest.raises(NotFoundError):
            read("nope/missing.json")


def test_invalid_keys_are_refused(store: Store) -> None:
    for bad in ("../escape", "/abs", "a/./b"):
        with pytest.raises(StoreError, match="invalid store key"):
            store.get(bad)


def test_get_range_reads_half_open_intervals_and_truncates(store: Store) -> None:
    store.put("digits", b"0123456789")
    assert store.get_range("digits", 0, 4) == b"0123"
    assert store.get_range("digits", 3, 4) == b"3"
    assert store.get_range("digits", 8, 20) == b"89"  # past the end: truncated
    assert store.get_range("digits", 10, 12) == b""  # starts at the end
    assert store.get_range("digits", 50, 60) == b""  # starts past the end
    assert store.get_range("digits", 5, 5) == b""
    assert store.get_range("digits", 6, 2) == b""
    store.put("empty", b"")
    assert store.get_range("empty", 0, 10) == b""


def test_open_streams_the_whole_object(store: Store) -> None:
    lines = [f'{{"prompt": "record {i}"}}\n'.encode() for i in range(50_000)]
    data = b"".join(lines)
    store.put("in.jsonl", data)
    with store.open("in.jsonl") as stream:
        head = stream.read(1000)
        rest = b"".join(iter(lambda: stream.read(65536), b""))
    assert head + rest == data
    with store.open("in.jsonl") as stream:
        assert list(stream) == lines


def test_write_into_places_objects_at_offsets_side_by_side(store: Store, tmp_path: Path) -> None:
    big = BINARY * 3000  # > 3 MB: several kernel copies / read chunks
    store.put("a.bin", big)
    store.put("b.bin", b"tail")
    store.put("empty", b"")
    fd = os.open(tmp_path / "out.bin", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"head")
        # Later objects first, from another thread: writes are positional, order does not matter.
        writer = threading.Thread(target=lambda: store.write_into("b.bin", fd, 4 + len(big)))
        writer.start()
        assert store.write_into("a.bin", fd, 4) == len(big)
        writer.join()
        assert store.write_into("empty", fd, 4) == 0
        assert os.lseek(fd, 0, os.SEEK_CUR) == 4, "the file position is untouched"
        with pytest.raises(NotFoundError):
            store.write_into("missing", fd, 0)
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == b"head" + big + b"tail"


def test_head_describes_the_object(store: Store) -> None:
    store.put("out/0001/_SUCCESS", b"x" * 123)
    info = store.head("out/0001/_SUCCESS")
    assert (info.key, info.size) == ("out/0001/_SUCCESS", 123)
    assert info.etag and '"' not in info.etag
    assert abs(info.mtime - time.time()) < 120
    assert [info.etag] == [o.etag for o in store.list("out/0001/")]
    # A listing's LastModified (ISO 8601) and HEAD's (an HTTP date) name the same second.
    assert [int(info.mtime)] == [int(o.mtime) for o in store.list("out/0001/")]
    store.put("out/0001/_SUCCESS", b"y" * 124)
    assert store.head("out/0001/_SUCCESS").etag != info.etag


def test_put_if_absent_writes_once(store: Store) -> None:
    assert store.put_if_absent("out/0001/_SUCCESS", b"first") is True
    assert store.put_if_absent("out/0001/_SUCCESS", b"second") is False
    assert store.get("out/0001/_SUCCESS") == b"first"


def test_put_if_match_compares_etags(store: Store) -> None:
    store.put("lease.json", b"v1")
    etag = store.head("lease.json").etag
    assert store.put_if_match("lease.json", b"v2", etag) is True
    assert store.get("lease.json") == b"v2"
    assert store.put_if_match("lease.json", b"v3", etag) is False  # stale etag
    assert store.get("lease.json") == b"v2"
    assert store.put_if_match("never-written.json", b"v1", etag) is False


def test_list_is_recursive_sorted_and_relative(store: Store) -> None:
    written = ["run.json", "out/0002/a-1.jsonl", "out/0001/b.jsonl", "out/0001/a.jsonl", "out/00x", "other/0001"]
    for key in written:
        store.put(key, key.encode())
    assert keys(store) == sorted(written)
    assert keys(store, "out/") == ["out/0001/a.jsonl", "out/0001/b.jsonl", "out/0002/a-1.jsonl", "out/00x"]
    assert keys(store, "out/0001/") == ["out/0001/a.jsonl", "out/0001/b.jsonl"]
    # A prefix may end mid-name, as S3's does.
    assert keys(store, "out/00") == ["out/0001/a.jsonl", "out/0001/b.jsonl", "out/0002/a-1.jsonl", "out/00x"]
    assert keys(store, "out/0002/a") == ["out/0002/a-1.jsonl"]
    assert keys(store, "missing/") == []
    sizes = {info.key: info.size for info in store.list()}
    assert sizes == {key: len(key) for key in written}


def test_list_order_is_byte_order_even_where_folders_meet_names(store: Store) -> None:
    # '-' < '/' < '0': a folder "a" holds keys that sort between "a-b" and "a0", as in S3.
    for key in ("x/a0", "x/a/b", "x/a-b", "x/a/a/z", "x/a.txt"):
        store.put(key, b".")
    assert keys(store, "x/") == sorted(keys(store, "x/")) == ["x/a-b", "x/a.txt", "x/a/a/z", "x/a/b", "x/a0"]
    assert keys(store, "x/a") == ["x/a-b", "x/a.txt", "x/a/a/z", "x/a/b", "x/a0"]
    assert keys(store, "x/a/") == ["x/a/a/z", "x/a/b"]


def test_list_paginates(store: Store) -> None:
    # On S3 the session server returns at most 3 keys per page (MOTO_S3_DEFAULT_MAX_KEYS).
    written = [f"parts/{i:04d}.jsonl" for i in range(13)]
    for key in reversed(written):
        store.put(key, b"-")
    assert keys(store, "parts/") == written


def test_delete_is_idempotent(store: Store) -> None:
    store.put("progress/0001.json", b"{}")
    store.delete("progress/0001.json")
    with pytest.raises(NotFoundError):
        store.get("progress/0001.json")
    store.delete("progress/0001.json")
    store.delete("never/was.json")
    assert keys(store) == []


def test_child_store_is_rooted_under_the_prefix(store: Store) -> None:
    run = store.child("run-1")
    run.put("chunks/0001.json", b"{}")
    assert store.get("run-1/chunks/0001.json") == b"{}"
    assert run.uri.rstrip("/").endswith("run-1")
    assert keys(run) == ["chunks/0001.json"]
    chunks = run.child("chunks")
    assert chunks.get("0001.json") == b"{}"
    assert keys(chunks) == ["0001.json"]
    store.put("run-10/other", b"x")  # a sibling sharing the name's first characters
    assert keys(run) == ["chunks/0001.json"]


def test_check_writable_passes_on_a_usable_store(store: Store) -> None:
    store.check_writable()


# -- S3 through a fault-injecting proxy ---------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["2026-12-02T02:36:23.000Z", "2026-12-02T02:36:23Z", "2026-12-02T02:36:23.123456+00:00",
     "Wed, 02 Dec 2026 02:36:23 GMT", 1764642983, "1764642983"],
)
def test_s3_timestamps_parse_like_botocore(value) -> None:
    from botocore.utils import parse_timestamp

    from chunkpilot.store.s3 import _parse_timestamp

    assert _parse_timestamp(value) == parse_timestamp(value)
    assert _parse_timestamp(value).tzinfo is not None


@pytest.fixture
def flaky_store(fault_proxy: FaultProxy, s3_store_uri: str) -> S3Store:
    """An S3 store whose every request goes through the fault proxy."""
    store = open_store(s3_store_uri)
    assert isinstance(store, S3Store)
    return store


def test_s3_survives_bursts_of_503_and_500(flaky_store: S3Store, fault_proxy: FaultProxy) -> None:
    fault_proxy.inject(SLOWDOWN, method="PUT", times=2)
    fault_proxy.inject(INTERNAL, method="PUT")
    flaky_store.put("a/1", b"one")
    fault_proxy.inject(SLOWDOWN, method="GET", times=2)
    fault_proxy.inject(INTERNAL, method="GET")
    assert flaky_store.get("a/1") == b"one"
    fault_proxy.inject(SLOWDOWN, method="GET", times=3)
    assert keys(flaky_store, "a/") == ["a/1"]
    fault_proxy.inject(SLOWDOWN, method="HEAD", times=2)
    assert flaky_store.head("a/1").size == 3
    assert fault_proxy.pending() == 0
    assert fault_proxy.injected == {SLOWDOWN: 9, INTERNAL: 2}


def test_s3_survives_connection_resets(flaky_store: S3Store, fault_proxy: FaultProxy) -> None:
    fault_proxy.inject(RESET, method="PUT", times=2)
    flaky_store.put("a/1", b"one")
    fault_proxy.inject(RESET, method="GET", times=2)
    assert flaky_store.get("a/1") == b"one"
    fault_proxy.inject(RESET, method="GET")
    assert keys(flaky_store) == ["a/1"]
    assert fault_proxy.injected[RESET] == 5 and fault_proxy.pending() == 0


def test_s3_get_resumes_a_cut_off_body(flaky_store: S3Store, fault_proxy: FaultProxy) -> None:
    data = BINARY * 1000  # ~1 MB
    flaky_store.put("big.bin", data)
    fault_proxy.inject(CUT, method="GET", times=2)  # the first GET and the first resume
    assert flaky_store.get("big.bin") == data
    fault_proxy.inject(CUT, method="GET")
    assert flaky_store.get_range("big.bin", 1000, 600_000) == data[1000:600_000]
    assert fault_proxy.injected[CUT] == 3
    assert fault_proxy.requests["GET"] == 5  # each cut costs exactly one extra ranged GET


def test_s3_open_resumes_a_cut_off_stream(flaky_store: S3Store, fault_proxy: FaultProxy) -> None:
    lines = [f'{{"prompt": "record {i}"}}\n'.encode() for i in range(40_000)]
    flaky_store.put("in.jsonl", b"".join(lines))
    fault_proxy.inject(CUT, method="GET", times=3)
    with flaky_store.open("in.jsonl") as stream:
        assert list(stream) == lines
    assert fault_proxy.injected[CUT] == 3


def test_s3_put_if_absent_recognises_its_own_lost_write(flaky_store: S3Store, fault_proxy: FaultProxy) -> None:
    # The PUT lands but answers 503; botocore retries and meets 412 on its own object.
    fault_proxy.inject(LOST_WRITE, method="PUT")
    assert flaky_store.put_if_absent("out/0001/_SUCCESS", b"mine") is True
    assert fault_proxy.requests["PUT"] == 2
    # Another writer, other bytes: the object is not theirs.
    assert flaky_store.put_if_absent("out/0001/_SUCCESS", b"theirs") is False
    assert flaky_store.get("out/0001/_SUCCESS") == b"mine"


def test_s3_put_if_match_recognises_its_own_lost_write(flaky_store: S3Store, fault_proxy: FaultProxy) -> None:
    flaky_store.put("lease.json", b"v1")
    etag = flaky_store.head("lease.json").etag
    fault_proxy.inject(LOST_WRITE, method="PUT")
    assert flaky_store.put_if_match("lease.json", b"v2", etag) is True
    assert flaky_store.put_if_match("lease.json", b"v3", etag) is False


def test_s3_survives_random_faults(flaky_store: S3Store, fault_proxy: FaultProxy) -> None:
    fault_proxy.rate = 0.3  # seeded: the same requests fail on every run
    for i in range(15):
        flaky_store.put(f"k/{i:02d}", str(i).encode())
        assert flaky_store.get(f"k/{i:02d}") == str(i).encode()
    assert keys(flaky_store, "k/") == [f"k/{i:02d}" for i in range(15)]
    assert sum(fault_proxy.injected.values()) > 5


def test_s3_retries_a_conditional_write_conflict(s3_server: str) -> None:
    """409 ConditionalRequestConflict (real S3 under concurrent conditional writes) is retried."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.session.Session().client("s3", endpoint_url=s3_server)
    store = S3Store("bkt", "runs", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
        stub.add_response("put_object", {"ETag": '"abc"'})
        assert store.put_if_absent("k", b"data") is True
        stub.assert_no_pending_responses()


# -- S3 configuration errors ------------------------------------------------------
def test_s3_check_writable_names_a_missing_bucket(s3_server: str) -> None:
    with pytest.raises(StoreError, match="create the bucket"):
        S3Store("cp-no-such-bucket", "runs").check_writable()
    with pytest.raises(StoreError, match="create the bucket") as raised:
        S3Store("cp-no-such-bucket", "runs").get("run.json")
    assert not isinstance(raised.value, NotFoundError)  # a missing bucket is not a missing key


def test_s3_check_writable_names_an_unreachable_endpoint(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{closed_loopback_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    with pytest.raises(StoreError, match="AWS_ENDPOINT_URL") as raised:
        S3Store(s3_bucket, "runs", max_attempts=2).check_writable()
    assert dead in str(raised.value)


def test_s3_check_writable_names_missing_credentials(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    reset_clients()  # credentials are resolved when a client is built
    try:
        with pytest.raises(StoreError, match="AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"):
            S3Store(s3_bucket, "runs").check_writable()
    finally:
        reset_clients()


def test_s3_errors_never_carry_credentials(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLEAKCHECK0000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sEcReT/leak+check")
    reset_clients()
    failures: list[Any] = []
    try:
        for call in (lambda s: s.check_writable(), lambda s: s.get("k"), lambda s: s.put("k", b"x")):
            with pytest.raises(StoreError) as raised:
                call(S3Store("cp-no-such-bucket"))
            failures.append(raised.value)
    finally:
        reset_clients()
    for exc in failures:
        text = f"{exc} {exc.__cause__}"
        assert "sEcReT" not in text and "AKIDLEAKCHECK" not in text


@pytest.mark.parametrize("uri", ["runs", "./runs", "/abs/runs", "file:///abs/runs", "s3://my-bucket", "s3://my-bucket/a/b/",
                                 "C:/windows/path", "r2.store/x"])
def test_store_uris_that_are_accepted(uri: str) -> None:
    from chunkpilot.store import check_store_uri

    assert check_store_uri(uri) == uri


@pytest.mark.parametrize("uri, message", [
    ("s3:/bad", "did you mean s3://bucket/prefix?"),
    ("s3:bad", "did you mean s3://bucket/prefix?"),
    ("S3://bucket/x", "did you mean s3://bucket/prefix?"),
    ("s3://", "invalid bucket name ''"),
    ("s3://Bad_Bucket", "invalid bucket name 'Bad_Bucket'"),
    ("s3://ab", "invalid bucket name 'ab'"),
    ("s3://bucket//x", "invalid prefix"),
    ("s3://bucket/../x", "invalid prefix"),
    ("gs://bucket/x", "unsupported store URI 'gs://bucket/x'"),
    ("http:foo", "unsupported store URI"),
    ("file://", "names no folder"),
    ("", "empty store URI"),
])
def test_store_uris_that_are_refused(uri: str, message: str) -> None:
    from chunkpilot.errors import ConfigError
    from chunkpilot.store import check_store_uri

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_store_uri(uri)
