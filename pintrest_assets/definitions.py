"""The project's Definitions: everything under ``defs/``, one folder per stage, and its resources."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
