"""Backup, verification and restore of a whole enclave (``enclave backup``).

A backup destination holds content-addressed objects and one signed manifest per backup:

    DEST/objects/<2 hex>/<sha256>     every file's bytes, named by their sha256, written once
    DEST/backups/<id>.json            the manifest: every file's path, sha256, size and mode,
                                      the database snapshot, the sealed keys, the audit head
    DEST/destroyed.json               every destruction the enclave has recorded so far

Objects and manifests are written under temporary names and renamed into place, the
manifest last: a backup killed at any point leaves the earlier ones intact, and the next
run reuses the objects it already wrote. See docs/operations.md.
"""
