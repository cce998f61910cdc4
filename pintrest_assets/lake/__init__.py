"""Lake machinery: the DataFrames' schemas, the parsing of landed objects and their running statistics."""
