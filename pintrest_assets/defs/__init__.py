"""What the Dagster UI shows, one folder per stage: sources, ingest, lake, transform; and the resources."""
