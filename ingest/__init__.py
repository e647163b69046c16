"""Ingest: MQTT → Parquet lake (``meters ingest``) and compaction (``meters compact``)."""
