"""Code to data: papermill batch jobs run in the sandbox of the interactive servers.

``states`` (the run's life as data), ``service`` (what people and the worker do),
``runner`` (Docker), ``provenance`` (checksums, manifests and rerun comparison).
"""
