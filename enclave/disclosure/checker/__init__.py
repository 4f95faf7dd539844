"""The output file checker (``enclave egress check``): content-typed, fail-closed."""

from enclave.disclosure.checker.core import CheckReport, FileReport, check_file, check_files

__all__ = ["CheckReport", "FileReport", "check_file", "check_files"]
