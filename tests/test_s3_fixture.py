"""The S3 servers themselves answer put/get/list over HTTP (guards the fixtures)."""

from tests.fixtures.s3 import S3Bucket


def test_bucket_round_trip(s3_bucket: S3Bucket) -> None:
    client = s3_bucket.server.client()
    client.put_object(Bucket=s3_bucket.name, Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_bucket.name, Key="a/b.txt")["Body"].read() == b"hello"
    listed = client.list_objects_v2(Bucket=s3_bucket.name, Prefix="a/")
    assert [item["Key"] for item in listed["Contents"]] == ["a/b.txt"]
