"""Transform: the cleaned tables, the nine answers, their checks and their automation."""
