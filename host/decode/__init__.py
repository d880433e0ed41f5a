"""Frames to tables: the vectorised decoder (bulk) and the file streams around it.

The first stage of the host's data path; every wing above reads frames through it."""
