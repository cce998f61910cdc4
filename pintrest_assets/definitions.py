"""The project's Definitions: everything under ``defs/``, loaded by ``dg.load_from_defs_folder``:
the stages' folders ``sources/``, ``ingest/``, ``lake/``, ``transform/`` and ``stream/``, and
``resources.py`` (the resources and the executor). No logic here; ``defs/__init__.py`` says what
each folder holds."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
