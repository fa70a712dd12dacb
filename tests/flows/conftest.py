"""Fixtures of the flows' tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`s3://` for real: the amazon provider's S3 file system (s3fs on aiobotocore) with the `aws_default`
    connection pointed at a moto server on a free local port, bucket `pb-incidents` created. Returns a
    boto3 S3 client of that server, to look at the objects from outside."""
    import json

    import boto3
    import requests
    from airflow.sdk.io import store
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()  # moto's state is per process
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": "ap-northeast-1", "endpoint_url": endpoint}}))
    monkeypatch.setattr(store, "_STORE_CACHE", {})  # the file system is built for this connection
    client = boto3.client("s3", endpoint_url=endpoint, region_name="ap-northeast-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="pb-incidents", CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
    try:
        yield client
    finally:
        server.stop()
