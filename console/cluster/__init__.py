"""Cluster mode: the state replicas share, kept in PostgreSQL (`cluster: postgresql://…`)."""
