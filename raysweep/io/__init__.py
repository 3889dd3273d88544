"""All I/O: the Store (store: pyarrow.fs, a folder, s3://, gs://), every path in it (paths), checkpoints
(checkpoints: safetensors + sha256), manifests (manifests), the points files' schemas (schemas), the
runs stored (runs), external checkpoints named by a job (external) and the run lease (lease)."""
