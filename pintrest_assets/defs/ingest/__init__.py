"""Ingest: the emulated topic streams, sent through the REST proxy, and the emulation schedule."""
