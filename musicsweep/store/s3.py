"""The S3 store (`s3://bucket/prefix`), for AWS and S3-compatible servers, through boto3.

Credentials come only from boto3's standard chain (environment, profile, instance role); this
module never reads, logs or writes them. Every object is written by one PUT or one completed
multipart upload, so a reader sees a whole object or none: an interrupted upload is never listed.
"""

from __future__ import annotations

import shutil
import time
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)

from musicsweep.config import StoreConfig, check_store_url
from musicsweep.errors import MusicsweepError
from musicsweep.store.base import ObjectInfo, Store
from musicsweep.store.retry import TransferMismatch
from musicsweep.store.tempfiles import pull_temp_path
from musicsweep.store.verify import content_md5, etag_matches

MULTIPART_THRESHOLD = 16 * 1024 * 1024
# The fallback claim reads its object back after this long, so of two racers the later one wins.
FALLBACK_SETTLE_S = 0.3
MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
PRECONDITION_CODES = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; the prefix has no leading or trailing slash."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise MusicsweepError(f"store {url}: no bucket name (expected s3://bucket/prefix)")
    check_store_url(url, f"store {url}")
    return bucket, prefix.strip("/")


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Store(Store):
    """Keys live under `prefix/` in `bucket`; `check()` proves access before any work starts."""

    def __init__(self, config: StoreConfig, transfer: TransferConfig | None = None) -> None:
        self.url = config.url
        self.bucket, self.prefix = parse_s3_url(config.url)
        self.transfer = transfer or TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)
        # Short connect timeout and few retries: a wrong endpoint must fail in seconds, not minutes.
        client_config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if config.endpoint_url else None,
        )
        try:
            session = boto3.session.Session(profile_name=config.profile, region_name=config.region)
        except ProfileNotFound:
            raise MusicsweepError(f"store {self.url}: AWS profile {config.profile!r} not found") from None
        self.client = session.client("s3", endpoint_url=config.endpoint_url, config=client_config)
        self.endpoint = config.endpoint_url or "AWS"
        # None until first needed: does the server honour `If-None-Match: *` on PUT?
        self.conditional_writes: bool | None = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def check(self) -> None:
        """One line for a missing bucket, refused credentials or an unreachable endpoint."""
        where = f"store {self.url} (endpoint {self.endpoint})"
        try:
            self.client.head_bucket(Bucket=self.bucket)
            self.client.put_object(Bucket=self.bucket, Key=self._key(".musicsweep/check"), Body=b"ok\n")
        except NoCredentialsError:
            raise MusicsweepError(f"{where}: no AWS credentials found in the environment or profile") from None
        except (EndpointConnectionError, ConnectTimeoutError):
            raise MusicsweepError(f"{where}: cannot connect to the endpoint") from None
        except ClientError as error:
            code = error_code(error)
            if code in ("404", "NoSuchBucket"):
                raise MusicsweepError(f"{where}: bucket {self.bucket!r} does not exist") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                denied = f"access denied to bucket {self.bucket!r} (check credentials and permissions)"
                raise MusicsweepError(f"{where}: {denied}") from None
            raise MusicsweepError(f"{where}: {code or 'error'}: {error.response['Error'].get('Message', '')}") from None
        except BotoCoreError as error:
            raise MusicsweepError(f"{where}: {error}") from None

    def _head(self, key: str) -> dict | None:
        """HEAD of `key`, or None when it is missing."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error_code(error) in MISSING_CODES:
                return None
            raise

    def info(self, key: str) -> ObjectInfo | None:
        head = self._head(key)
        return None if head is None else ObjectInfo(int(head["ContentLength"]), head["ETag"].strip('"'))

    def age_s(self, key: str) -> float | None:
        """The server's `Date` minus the object's `Last-Modified`: both the store's clock."""
        head = self._head(key)
        if head is None:
            return None
        date = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if not date or "LastModified" not in head:
            return None
        return max(0.0, (parsedate_to_datetime(date) - head["LastModified"]).total_seconds())

    def put_file(self, key: str, path: Path) -> None:
        """Upload with a checksum, then HEAD and compare size and ETag; a mismatch raises TransferMismatch.

        One PUT with Content-MD5 below the threshold (the server refuses a torn body); multipart
        above it (S3 shows the object only once the upload completes), each part with its SHA-256
        (`x-amz-checksum-sha256`, checked by the server), the whole then checked by its ETag
        against the MD5s of our own parts.
        """
        path = Path(path)
        if path.stat().st_size < self.transfer.multipart_threshold:
            self.put_bytes(key, path.read_bytes())
        else:
            extra = {"ChecksumAlgorithm": "SHA256"}  # each part carries its SHA-256: the server refuses a torn part
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=self.transfer)
        info = self.info(key)
        if info is None or not etag_matches(path, info, self.transfer.multipart_chunksize):
            found = "nothing" if info is None else f"{info.size} bytes, ETag {info.etag}"
            raise TransferMismatch(f"{key}: sent {path.stat().st_size} bytes, the store holds {found}")

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentMD5=content_md5(data))

    def put_new(self, key: str, data: bytes) -> bool:
        if self.conditional_writes is None:
            self.conditional_writes = self._probe_conditional_writes()
        if self.conditional_writes:
            return self._put_if_absent(key, data)
        return self._put_if_absent_fallback(key, data)

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as error:
            if error_code(error) in PRECONDITION_CODES:
                return False
            raise
        return True

    def _put_if_absent_fallback(self, key: str, data: bytes) -> bool:
        """Skip-if-exists for servers without conditional writes: HEAD, PUT with a unique token, read back.

        Of two writers that both saw the key absent, only the one whose token is still there after
        the settle time wins. The token travels as object metadata, so the body stays `data`.
        """
        if self.exists(key):
            return False
        token = uuid.uuid4().hex
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, Metadata={"claim-token": token})
        time.sleep(FALLBACK_SETTLE_S)
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return head.get("Metadata", {}).get("claim-token") == token

    def _probe_conditional_writes(self) -> bool:
        """Create a probe key twice with `If-None-Match: *`: only a server that refuses the second honours it."""
        probe = f".musicsweep/conditional-probe-{uuid.uuid4().hex}"
        try:
            first = self._put_if_absent(probe, b"1")
            second = self._put_if_absent(probe, b"2")
        except ClientError:  # NotImplemented, InvalidArgument, ...: the server rejects the header
            return False
        finally:
            self.delete(probe)
        return first and not second

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def get_range(self, key: str, start: int, end: int) -> bytes:
        request = {"Bucket": self.bucket, "Key": self._key(key), "Range": f"bytes={start}-{end - 1}"}
        try:
            return self.client.get_object(**request)["Body"].read()
        except ClientError as error:
            if error_code(error) in ("416", "InvalidRange"):  # an empty object
                return b""
            raise

    def get_file(self, key: str, path: Path) -> None:
        """Download next to `path`, check the length, then rename: a local reader never sees half a file.

        One streamed GET: `download_file` would add a HEAD per object, doubling a pull's requests.
        The temporary name carries this process's pid, so a later pull can remove what a killed one left.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = pull_temp_path(path)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            with open(partial, "wb") as handle:
                shutil.copyfileobj(response["Body"], handle, 1 << 20)
            if partial.stat().st_size != int(response["ContentLength"]):
                got = partial.stat().st_size
                raise TransferMismatch(f"{key}: downloaded {got} of {response['ContentLength']} bytes")
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def list(self, prefix: str) -> dict[str, ObjectInfo]:
        found: dict[str, ObjectInfo] = {}
        strip = len(self._key(""))
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                found[item["Key"][strip:]] = ObjectInfo(int(item["Size"]), item["ETag"].strip('"'))
        return found

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
