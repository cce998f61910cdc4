"""Transform machinery: the cleaning rules, the questions and their charts, as pure Spark functions."""
