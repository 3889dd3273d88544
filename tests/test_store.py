"""Store over pyarrow.fs, local and S3 (a real S3-protocol server on 127.0.0.1), and its failures."""
import pytest
from conftest import free_port, start_moto

from raysweep.io.store import Store, StoreError


def test_local_roundtrip_and_atomic_writes(tmp_path):
    store = Store(str(tmp_path / "root"))
    store.check()
    store.write_json("a/b.json", {"x": 1})
    store.write_bytes("a/c/d.bin", b"\x00\x01")
    assert store.read_json("a/b.json") == {"x": 1}
    assert store.list("a", recursive=True) == ["a/b.json", "a/c/d.bin"]
    assert store.list_dirs("a") == ["a/c"]
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "root").rglob("*"))
    store.delete("a/c")
    assert not store.exists("a/c/d.bin")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.read_bytes("nope")


def test_s3_roundtrip_lists_the_bucket(s3_bucket):
    name, client = s3_bucket
    store = Store(f"s3://{name}/prefix")
    store.check()
    store.write_json("run/x.json", {"y": 2})
    assert store.read_json("run/x.json") == {"y": 2}
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"] if not o["Key"].endswith("/")]
    assert keys == ["prefix/run/x.json"]  # the probe of check() was removed (pyarrow keeps "prefix/" markers)
    assert Store(store.address).read_json("run/x.json") == {"y": 2}


def test_missing_bucket(s3_server):
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        Store("s3://no-such-bucket/x").check()


def test_unreachable_endpoint_fails_fast():
    port = free_port()  # nothing listens there
    with pytest.raises(StoreError, match="Check the endpoint"):
        Store(f"s3://bucket/x?endpoint_override=http://127.0.0.1:{port}").check()


def test_bad_credentials():
    port = free_port()
    proc = start_moto(port, INITIAL_NO_AUTH_ACTION_COUNT="0")  # this server checks credentials
    try:
        with pytest.raises(StoreError, match="Check the credentials"):
            Store(f"s3://bucket/x?endpoint_override=http://127.0.0.1:{port}").check()
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_endpoint_that_never_answers_fails_within_a_minute(tmp_path):
    """A server that accepts connections and never replies (a hung proxy): one message, bounded time."""
    import socket
    import threading
    import time

    from raysweep.io.store import Store, StoreError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # hold it open, say nothing
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()
    try:
        port = server.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(StoreError, match="cannot be used.*endpoint"):
            Store(f"s3://bucket/x?endpoint_override=127.0.0.1:{port}&scheme=http").check()
        assert time.monotonic() - start < 60
    finally:
        stop.set()
        for c in held:
            c.close()
        server.close()


def test_read_only_commands_on_a_missing_bucket_or_dead_endpoint_say_so(s3_server, tmp_path):
    from conftest import free_port, write_job_toml
    from typer.testing import CliRunner

    from raysweep.cli import app

    job_file = write_job_toml(tmp_path / "tiny.toml")
    for cmd in (["results", job_file], ["status", job_file], ["query", job_file, "select 1"]):
        r = CliRunner().invoke(app, [*cmd, "--storage", "s3://no-bucket-here/x"])
        assert r.exit_code == 2 and "does not exist" in r.output, r.output
    dead = f"s3://b/x?endpoint_override=127.0.0.1:{free_port()}&scheme=http"  # nothing listens there
    for cmd in (["results", job_file], ["status", job_file]):
        r = CliRunner().invoke(app, [*cmd, "--storage", dead])
        assert r.exit_code in (1, 2) and "Traceback" not in r.output and r.output.count("\n") <= 3, r.output
        assert "storage" in r.output
