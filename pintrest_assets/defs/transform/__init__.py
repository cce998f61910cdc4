"""Transform: the cleaned tables, the answers, their checks and their automation."""
