"""The files a study leaves: Parquet tables, checkpoints, the manifest, and the rule that picks the best."""
