"""Enclave: a trusted research environment for sensitive health data."""

__version__ = "0.1.0"
