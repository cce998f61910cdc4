"""Transform machinery: the cleaning rules, the nine questions and their charts, as pure Spark functions."""
