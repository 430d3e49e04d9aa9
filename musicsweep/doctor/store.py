"""The store: a folder that exists and is writable, or a bucket reachable with accepted credentials.

The S3 checks go in order (credentials, endpoint, bucket, write), and a step that cannot run
because an earlier one failed is reported as skipped, so the first failure is the one to fix.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from musicsweep.config import Config
from musicsweep.doctor.result import FAIL, FIXED, NOTE, OK, SKIP, Check

PROBE_KEY = ".musicsweep/doctor-write-check"


def store_checks(config: Config, fix: bool) -> list[Check]:
    if config.store.url.startswith("s3://"):
        return s3_checks(config)
    return [folder_check(Path(config.store.url), fix)]


def folder_check(folder: Path, fix: bool) -> Check:
    name = "store folder"
    if folder.is_dir():
        if os.access(folder, os.W_OK):
            return Check(name, OK, f"{folder} is writable")
        return Check(name, FAIL, f"{folder} is not writable", f"chmod u+w {folder}, or choose another store")
    if folder.exists():
        return Check(name, FAIL, f"{folder} exists and is not a folder", "set store: to a folder")
    parent = next(path for path in folder.parents if path.exists())
    if not (parent.is_dir() and os.access(parent, os.W_OK)):
        return Check(name, FAIL, f"{folder} cannot be created: {parent} is not writable", "choose another store")
    if fix:
        try:
            folder.mkdir(parents=True)
        except OSError as error:
            return Check(name, FAIL, f"cannot create {folder}: {error.strerror}", "choose a writable store folder")
        print(f"fixed: created the store folder {folder}")
        return Check(name, FIXED, f"created {folder}")
    return Check(name, NOTE, f"{folder} does not exist yet (the launch creates it)", "musicsweep doctor --fix")


def endpoint_answers(url: str, timeout_s: float = 3.0) -> str | None:
    """None when a TCP connection to the endpoint opens, else why not."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return None
    except OSError as error:
        return error.strerror or str(error)


def s3_checks(config: Config) -> list[Check]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from musicsweep.store.s3 import error_code, parse_s3_url

    store = config.store
    bucket, prefix = parse_s3_url(store.url)
    checks: list[Check] = []
    try:
        session = boto3.session.Session(profile_name=store.profile, region_name=store.region)
        credentials = session.get_credentials()
    except BotoCoreError as error:
        credentials, problem = None, str(error)
    else:
        problem = "none in the environment, the profile or an instance role"
    if credentials is None:
        fix = "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or set AWS_PROFILE (or store.profile)"
        checks.append(Check("store credentials", FAIL, f"AWS credentials: {problem}", fix))
    else:
        checks.append(Check("store credentials", OK, f"AWS credentials from {credentials.method}"))
    if store.endpoint_url:
        unreachable = endpoint_answers(store.endpoint_url)
        if unreachable:
            fix = "start the server, or correct store.endpoint_url"
            checks.append(Check("store endpoint", FAIL, f"{store.endpoint_url}: {unreachable}", fix))
        else:
            checks.append(Check("store endpoint", OK, f"{store.endpoint_url} answers"))
    else:
        checks.append(Check("store endpoint", OK, "AWS"))
    if any(check.failed for check in checks):
        skipped = "needs credentials and an endpoint that answers"
        return [*checks, Check("store bucket", SKIP, skipped), Check("store write", SKIP, skipped)]
    from musicsweep.store.s3 import S3Store

    client = S3Store(store).client
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = error_code(error)
        if code in ("404", "NoSuchBucket"):
            checks.append(Check("store bucket", FAIL, f"{bucket!r} does not exist", f"aws s3 mb s3://{bucket}"))
        else:
            checks.append(Check("store bucket", FAIL, f"{bucket!r}: {code}: access refused", "check the credentials"))
        return [*checks, Check("store write", SKIP, "needs the bucket")]
    except BotoCoreError as error:
        return [*checks, Check("store bucket", FAIL, str(error)), Check("store write", SKIP, "needs the bucket")]
    checks.append(Check("store bucket", OK, f"{bucket!r} exists"))
    key = f"{prefix}/{PROBE_KEY}" if prefix else PROBE_KEY
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"ok\n")
        client.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as error:
        code = error_code(error) if isinstance(error, ClientError) else str(error)
        checks.append(Check("store write", FAIL, f"cannot write under {store.url}: {code}", "grant s3:PutObject"))
    else:
        checks.append(Check("store write", OK, f"wrote and deleted {store.url}/{PROBE_KEY}"))
    return checks
