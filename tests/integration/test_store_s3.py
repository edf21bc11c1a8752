"""The store's create-only write on S3 (moto's server): the aws provider's conditional PUT."""
from __future__ import annotations

import threading

import boto3
import pytest

from cloudhop.store import Store

pytestmark = pytest.mark.integration

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def test_create_only_write_on_s3_has_one_winner(moto_url):
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **CREDS).create_bucket(Bucket="cloudhop-once")
    s = Store("s3://cloudhop-once/root", {"key": "testing", "secret": "testing",
                                          "client_kwargs": {"endpoint_url": moto_url, "region_name": "us-east-1"}})
    wins = []

    def attempt(i):
        if s.write_bytes_if_absent("once", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(wins) == 1
    assert s.read_bytes("once") == str(wins[0]).encode()
    assert not s.write_bytes_if_absent("once", b"x")
    assert s.read_bytes("once") == str(wins[0]).encode()
