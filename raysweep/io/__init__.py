"""All I/O: the Store (pyarrow.fs: local, s3://, gs://), every path in it, checkpoints (safetensors +
sha256), manifests, the split cache's records and the run lease."""
