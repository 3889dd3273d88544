"""Store over pyarrow.fs, local and S3 (a real S3-protocol server on 127.0.0.1), and its failures."""
import pytest

from raysweep.store import Store, StoreError

from conftest import _free_port, start_moto


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
    port = _free_port()  # nothing listens there
    with pytest.raises(StoreError, match="Check the endpoint"):
        Store(f"s3://bucket/x?endpoint_override=http://127.0.0.1:{port}").check()


def test_bad_credentials():
    port = _free_port()
    proc = start_moto(port, INITIAL_NO_AUTH_ACTION_COUNT="0")  # this server checks credentials
    try:
        with pytest.raises(StoreError, match="Check the credentials"):
            Store(f"s3://bucket/x?endpoint_override=http://127.0.0.1:{port}").check()
    finally:
        proc.terminate()
        proc.wait(10)
