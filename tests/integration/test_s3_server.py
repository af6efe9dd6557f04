"""The S3 server of the tests (tests/fixtures/s3.py, devenv/seaweed.py) is what the object-store tests take it
for: SeaweedFS answering signed S3 on loopback only, refusing other credentials, no bucket made on upload,
its data kept across a stop and start by PID, unfinished multipart uploads visible through the filer."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import obstore
import psutil
import pytest
from httpx_auth import AWS4Auth
from obstore.store import S3Store

from devenv import ports, processes, seaweed
from tests.docs_commands import shell_blocks
from tests.fixtures.s3 import S3Server

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def store(s3: S3Server, bucket: str, secret: str | None = None) -> S3Store:
    return S3Store(
        bucket,
        endpoint=s3.endpoint,
        region=s3.region,
        access_key_id=s3.access_key_id,
        secret_access_key=secret or s3.secret_access_key,
        client_options={"allow_http": True},
        retry_config={"max_retries": 0, "backoff": {}, "retry_timeout": timedelta(seconds=5)},
    )


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process `pid` holds, IPv4 and IPv6."""
    sockets = psutil.Process(pid).net_connections(kind="tcp")
    return {(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN}


def test_signed_requests_are_served_on_loopback_and_nothing_listens_elsewhere(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    data = b"snapshot bytes " * 1000
    obstore.put(store(s3_server, bucket), "a/b.snapshot", data)
    assert bytes(obstore.get(store(s3_server, bucket), "a/b.snapshot").bytes()) == data
    assert [m["path"] for m in obstore.list(store(s3_server, bucket)).collect()] == ["a/b.snapshot"]

    assert s3_server.pid is not None
    sockets = listening(s3_server.pid)
    assert {port for _, port in sockets} == set(s3_server.ports.values()), "one listener per chosen port"
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    s3_server.delete_bucket(bucket)


def test_wrong_credentials_and_a_missing_bucket_are_refused(s3_server: S3Server, s3_bucket: str) -> None:
    with pytest.raises(obstore.exceptions.BaseError) as refused:
        obstore.put(store(s3_server, s3_bucket, secret="not-the-secret"), "x", b"data")
    assert "status: 403" in str(refused.value) and "SignatureDoesNotMatch" in str(refused.value), refused.value
    with pytest.raises(FileNotFoundError) as unknown:
        obstore.put(store(s3_server, "no-such-bucket"), "x", b"data")
    assert "NoSuchBucket" in str(unknown.value)
    assert list(obstore.list(store(s3_server, s3_bucket)).collect()) == [], "nothing stored"


def test_stop_and_start_keep_the_data(s3_server: S3Server, s3_bucket: str) -> None:
    obstore.put(store(s3_server, s3_bucket), "kept", b"before the stop")
    pid = s3_server.pid
    s3_server.stop()
    assert pid is not None and not processes.alive(pid)
    with pytest.raises(obstore.exceptions.BaseError):
        obstore.get(store(s3_server, s3_bucket), "kept")
    s3_server.start()
    assert bytes(obstore.get(store(s3_server, s3_bucket), "kept").bytes()) == b"before the stop"


def test_unfinished_multipart_uploads_are_listed_until_aborted(s3_server: S3Server, s3_bucket: str) -> None:
    answer = s3_server.s3("POST", f"/{s3_bucket}/big.snapshot?uploads=").decode()
    match = re.search(r"<UploadId>([^<]+)</UploadId>", answer)
    assert match, answer
    assert len(s3_server.uploads(s3_bucket)) == 1
    s3_server.s3("DELETE", f"/{s3_bucket}/big.snapshot?uploadId={match[1]}")
    assert s3_server.uploads(s3_bucket) == []
    with pytest.raises(httpx.HTTPStatusError) as missing:
        s3_server.s3("DELETE", f"/{s3_bucket}-gone")
    assert missing.value.response.status_code == 404


def test_the_contributing_commands_start_and_stop_one_with_its_data_kept(tmp_path: Path) -> None:
    if seaweed.binary() is None:
        pytest.skip("no SeaweedFS binary: run `python3 devenv/gotools.py build weed`")
    [block] = [b for b in shell_blocks(REPO / "CONTRIBUTING.md") if "make s3-up" in b]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make s3-up", "make s3-down"]
    port = ports.free_port()
    # Not the MAKEFLAGS of a `make test` around us: a sub-make would print its directory into the output.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(DEVENV_STATE_DIR=str(tmp_path), S3_PORT=str(port))
    run = {"cwd": REPO, "env": env, "capture_output": True, "text": True, "timeout": 120}
    up = subprocess.run(["bash", "-c", commands[0]], **run)  # type: ignore[call-overload]
    assert up.returncode == 0, up.stderr
    pid = json.loads((tmp_path / "seaweed.json").read_text())["pid"]
    try:
        endpoint = up.stdout.strip().splitlines()[-1]
        assert endpoint == f"http://127.0.0.1:{port}"
        lines = (tmp_path / "seaweed" / "credentials.env").read_text().splitlines()
        creds = dict(line.split("=", 1) for line in lines)
        assert creds["AWS_ENDPOINT_URL"] == endpoint
        auth = AWS4Auth(
            access_id=creds["AWS_ACCESS_KEY_ID"],
            secret_key=creds["AWS_SECRET_ACCESS_KEY"],
            region=creds["AWS_REGION"],
            service="s3",
        )
        assert b"ListAllMyBucketsResult" in httpx.get(endpoint + "/", auth=auth, timeout=10).content
    finally:
        down = subprocess.run(["bash", "-c", commands[1]], **run)  # type: ignore[call-overload]
    assert down.returncode == 0, down.stderr
    assert not processes.alive(pid)
    assert (tmp_path / "seaweed" / "data").is_dir(), "the data stays"
