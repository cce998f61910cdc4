"""Lake: the topics' objects mounted from the bucket, the raw JSON assets, the Spark DataFrames and the sensor on new objects."""
