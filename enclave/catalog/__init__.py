"""Curated datasets: data dictionaries, ingest into immutable versions, opt-outs, and
per-project minimised, pseudonymised views (see docs/datasets.md)."""
