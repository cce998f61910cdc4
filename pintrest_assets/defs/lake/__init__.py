"""Lake: the topics' raw JSON objects mounted from the bucket, the Spark DataFrames, the sensor on new objects and the reconciliation."""
