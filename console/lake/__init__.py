"""The Parquet lake: each replica's traces, evals, outcomes and audit log as hive-partitioned Parquet."""
