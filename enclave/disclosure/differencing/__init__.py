"""Differencing protection: who is in each released cell, and noise that differencing cannot undo.

Two tables that are each safe can be subtracted: nested age bands, shifted date windows or
a cohort minus one category leave a difference of a few people. This package holds

- ``keys``: the enclave-wide key (host only) that turns a source patient key into a
  fingerprint, and the fixed record key of every patient for the cell-key method;
- ``store``: the differencing store under ``ENCLAVE_HOME/differencing`` (never in a
  container, never in released evidence): per dataset, a dense index of fingerprints, and
  per checked output the members of every cell;
- ``compare``: the comparison of a new table's cells with every earlier table's cells
  (margins and totals count as cells): a size pre-filter, a sketch bound, then exact
  set intersections of the few pairs left;
- ``cellkey``: the cell-key method and its p-table (``policies/differencing.yaml``);
- ``service``: what the egress workflow calls on submit and ``enclave egress check``.
"""
