"""Ingest: the source tables and the emulated topic streams sent through the REST proxy."""
