"""Backup, verification and restore of a whole enclave (``enclave backup``).

A backup destination holds content-addressed objects and one signed manifest per backup:

    DEST/packs/<id>.pack, <id>.idx    files' bytes and the database's chunks, each object once,
                                      known by its sha256, with where each one starts
    DEST/packs/<id>.midx              the indexes of many packs, merged into one
    DEST/objects/<2 hex>/<sha256>     the sealed keys (and objects of older backups)
    DEST/backups/<id>.json            the manifest: every file's path, sha256, size, mode and
                                      stat key, the database's chunks, the sealed keys, the
                                      audit head
    DEST/destroyed.json               every destruction the enclave has recorded so far

Objects and manifests are written under temporary names and renamed into place, the
manifest last: a backup killed at any point leaves the earlier ones intact, and the next
run reuses the objects it already wrote. See docs/operations.md.
"""
