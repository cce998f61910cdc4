"""Ingest machinery: the emulation of the original user_posting_emulation.py and the watch on landed records."""
