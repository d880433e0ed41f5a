"""Frames in: the ingest server (HTTP and MQTT), the exactly-once store, replay."""
