"""The S3 mount's machinery: listing new sink objects, gathering them into batch files, and the
ledger of what is mounted. The ``s3_mount`` resource (``lake/mount/resource.py``) drives it."""
