"""S3Store over HTTP against two independent S3 implementations (moto_server and s3rver)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from musicsweep.config import StoreConfig
from musicsweep.errors import MusicsweepError
from musicsweep.store.s3 import S3Store
from tests.fixtures.s3 import S3Bucket, S3Server, set_aws_env
from tests.fixtures.servers import free_port

MB = 1024 * 1024


def open_s3(bucket: S3Bucket, **transfer: int) -> S3Store:
    config = StoreConfig(bucket.url, endpoint_url=bucket.server.endpoint_url, region="us-east-1")
    return S3Store(config, TransferConfig(**transfer) if transfer else None)


def test_round_trip_under_prefix(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = open_s3(s3_bucket)
    store.check()
    store.put_bytes("sw/costs/a.json", b'{"a": 1}')
    store.put_json("sw/markers/a.done", {"ok": True})
    source = tmp_path / "clip.wav"
    source.write_bytes(b"RIFF" + os.urandom(1000))
    store.put_file("sw/audio/clip.wav", source)

    raw = s3_bucket.server.client().list_objects_v2(Bucket=s3_bucket.name, Prefix="musicsweep/sw/")
    assert sorted(item["Key"] for item in raw["Contents"]) == [
        "musicsweep/sw/audio/clip.wav",
        "musicsweep/sw/costs/a.json",
        "musicsweep/sw/markers/a.done",
    ]
    assert store.get_bytes("sw/costs/a.json") == b'{"a": 1}'
    assert store.get_json("sw/markers/a.done") == {"ok": True}
    info = store.info("sw/audio/clip.wav")
    assert info is not None and info.size == 1004
    assert info.etag == hashlib.md5(source.read_bytes()).hexdigest()
    assert store.info("sw/audio/missing.wav") is None and not store.exists("sw/audio/missing.wav")
    assert set(store.list("sw/")) == {"sw/audio/clip.wav", "sw/costs/a.json", "sw/markers/a.done"}
    assert store.list("sw/audio/")["sw/audio/clip.wav"] == info

    target = tmp_path / "pulled" / "clip.wav"
    store.get_file("sw/audio/clip.wav", target)
    assert target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["clip.wav"]
    store.delete("sw/costs/a.json")
    assert not store.exists("sw/costs/a.json")


def test_list_follows_pagination(s3_bucket: S3Bucket) -> None:
    store = open_s3(s3_bucket)
    for index in range(25):
        store.put_bytes(f"sw/markers/{index:03d}.done", b"x")
    pages = []

    def small_pages(params, **_):
        params["MaxKeys"] = 10
        pages.append(params.get("ContinuationToken"))

    store.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", small_pages)
    assert len(store.list("sw/")) == 25
    assert len(pages) == 3


def test_large_file_goes_multipart(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = open_s3(s3_bucket, multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    sent: list[str] = []  # each part's SHA-256 header, base64, as sent
    record = lambda request, **_: sent.append(request.headers.get("x-amz-checksum-sha256", b"").decode())  # noqa: E731
    store.client.meta.events.register("before-send.s3.UploadPart", record)
    source = tmp_path / "big.wav"
    source.write_bytes(os.urandom(12 * MB))
    store.put_file("sw/audio/big.wav", source)
    data = source.read_bytes()
    parts = [data[start : start + 5 * MB] for start in range(0, len(data), 5 * MB)]
    assert sorted(sent) == sorted(base64.b64encode(hashlib.sha256(part).digest()).decode() for part in parts)
    info = store.info("sw/audio/big.wav")
    assert info is not None and info.size == 12 * MB
    target = tmp_path / "back.wav"
    store.get_file("sw/audio/big.wav", target)
    assert hashlib.md5(target.read_bytes()).digest() == hashlib.md5(source.read_bytes()).digest()


def test_interrupted_multipart_upload_is_never_visible(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = open_s3(s3_bucket, multipart_threshold=5 * MB, multipart_chunksize=5 * MB, max_concurrency=1)
    source = tmp_path / "big.wav"
    source.write_bytes(os.urandom(11 * MB))
    parts = []

    def fail_second_part(**_):
        parts.append(1)
        if len(parts) == 2:
            raise ConnectionError("network cut mid-upload")

    store.client.meta.events.register("before-call.s3.UploadPart", fail_second_part)
    with pytest.raises(Exception, match="network cut"):
        store.put_file("sw/audio/big.wav", source)
    assert store.info("sw/audio/big.wav") is None
    assert store.list("sw/") == {}


def test_put_new_creates_once_and_reports_conditional_support(s3_bucket: S3Bucket) -> None:
    store = open_s3(s3_bucket)
    assert store.put_new("sw/claims/a.launch", b"first")
    assert not store.put_new("sw/claims/a.launch", b"second")
    assert store.get_bytes("sw/claims/a.launch") == b"first"
    # What the probe found: moto honours If-None-Match: *, s3rver ignores it (so the fallback runs).
    assert store.conditional_writes is (s3_bucket.server.kind == "moto")
    assert not any(key.startswith(".musicsweep/conditional-probe") for key in store.list(""))


def race_put_new(stores: list[S3Store], key: str) -> list[bool]:
    """Every store calls put_new(key) at the same instant; returns who won."""
    barrier = threading.Barrier(len(stores))
    results: list[bool] = []

    def racer(store: S3Store) -> None:
        barrier.wait()
        results.append(store.put_new(key, b"mine"))

    threads = [threading.Thread(target=racer, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_put_new_has_exactly_one_winner(s3_bucket: S3Bucket) -> None:
    stores = [open_s3(s3_bucket) for _ in range(3)]
    for store in stores:  # probe first, so the race below is between claims only
        store.put_new("sw/claims/warmup", b"x")
    for round_ in range(4):
        assert sorted(race_put_new(stores, f"sw/claims/race{round_}")) == [False, False, True]


def test_check_missing_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    set_aws_env(monkeypatch, s3_server)
    store = S3Store(StoreConfig("s3://no-such-bucket-here/x", endpoint_url=s3_server.endpoint_url))
    with pytest.raises(MusicsweepError, match="bucket 'no-such-bucket-here' does not exist") as error:
        store.check()
    assert "\n" not in str(error.value)


def test_check_wrong_access_key(s3rver_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto_server accepts any credentials, so only s3rver can refuse a key.
    set_aws_env(monkeypatch, S3Server("s3rver", s3rver_server, "WRONGKEY", "S3RVER"))
    store = S3Store(StoreConfig("s3://anybucket/x", endpoint_url=s3rver_server))
    denied = re.escape("access denied to bucket 'anybucket' (check credentials and permissions)")
    with pytest.raises(MusicsweepError, match=denied) as error:
        store.check()
    assert "WRONGKEY" not in str(error.value) and "\n" not in str(error.value)


def test_check_unreachable_endpoint_fails_fast(moto_bucket: S3Bucket) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    store = S3Store(StoreConfig(moto_bucket.url, endpoint_url=closed))
    started = time.monotonic()
    with pytest.raises(MusicsweepError, match=f"endpoint {closed}\\): cannot connect to the endpoint"):
        store.check()
    assert time.monotonic() - started < 15


def test_check_without_credentials(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3Store(StoreConfig("s3://anybucket/x", endpoint_url=moto_server, region="us-east-1"))
    with pytest.raises(MusicsweepError, match="no AWS credentials found"):
        store.check()


def test_unknown_profile_and_bad_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    with pytest.raises(MusicsweepError, match="AWS profile 'nope-profile' not found"):
        S3Store(StoreConfig("s3://bucket/x", profile="nope-profile"))
    with pytest.raises(MusicsweepError, match="no bucket name"):
        S3Store(StoreConfig("s3:///x"))
