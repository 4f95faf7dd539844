"""The disclosure policy: thresholds of the rules and limits of the output file checker.

Every default follows the published output-checking guidance (the SDC handbook used by UK
trusted research environments). ``policies/disclosure.yaml`` is the commented copy that
sites edit; :func:`load_disclosure_policy` reads it strictly.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from enclave.disclosure.verdict import Verdict
from enclave.policy import load_policy_file

POLICY_ENV = "ENCLAVE_DISCLOSURE_POLICY"
# The read-only folder in every workspace container holding the site's copy of the policy
# (the spawner and the job runner mount it; enclave.sandbox checks the mount).
POLICIES_PATH = "/etc/enclave/policies"
# Where the spawner and the job runner mount the site's copy in every workspace container.
SITE_POLICY_FILE = f"{POLICIES_PATH}/disclosure.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NKDominance(_Strict):
    """The n largest contributors to a cell may not make up k (a fraction) or more of it."""

    n: int = Field(2, ge=1, le=10)
    k: float = Field(0.9, gt=0.0, le=1.0)


class Rounding(_Strict):
    """Whether counts must be shown rounded, and to which base."""

    required: bool = False
    base: int = Field(5, ge=2, le=1000)


class CheckerLimits(_Strict):
    """What the output file checker lets through at all, before any rule runs."""

    allowed_types: tuple[str, ...] = ("csv", "tsv", "txt", "md", "json", "png", "jpeg", "ipynb")
    max_file_bytes: int = Field(256 * 1024 * 1024, ge=1)
    max_rows: int = Field(100_000, ge=1)
    # A table with at least this many rows, where rows look like one person each, is microdata.
    microdata_min_rows: int = Field(50, ge=2)
    # Runs of base64/hex this long inside text or notebook outputs are smuggled data.
    max_encoded_run: int = Field(256, ge=32)
    # Column names that mark counts; matched case-insensitively as whole words.
    count_column_words: tuple[str, ...] = (
        "n", "count", "counts", "freq", "frequency", "number", "num", "patients", "people",
        "persons", "cases", "events", "deaths", "admissions", "total", "size",
    )

    @model_validator(mode="after")
    def _known_types(self) -> CheckerLimits:
        unknown = sorted(set(self.allowed_types) - KNOWN_TYPES)
        if unknown:
            raise ValueError(f"unknown file type(s) {unknown}; choose from {sorted(KNOWN_TYPES)}")
        return self


KNOWN_TYPES = frozenset({"csv", "tsv", "txt", "md", "json", "png", "jpeg", "ipynb"})


class RowLevel(_Strict):
    """When a table (or text) is taken for one row per person, whatever its column names."""

    # Tables with at least this many rows are tested for per-person rows by content
    # (identifier-shaped keys, per-person dates, repeated labels, quasi-identifiers).
    min_rows: int = Field(5, ge=2)
    # A column (or one text) with this many distinct full dates off any regular calendar
    # (not daily, weekly or monthly steps) holds per-person dates.
    min_dates: int = Field(3, ge=2)
    # Prose may name a few dates (a study period); more distinct full dates than this fail.
    max_dates_in_text: int = Field(5, ge=1)
    # Shortest unlabelled list of numbers (a JSON array, a literal in code) that needs a person.
    min_bare_numbers: int = Field(5, ge=2)
    # A text with this many distinct tokens of one shape (letters, digits and punctuation in the
    # same pattern, e.g. LS6-1961-F) that carry a year, a date or a sex code holds records
    # written without delimiters or a header, and fails.
    min_record_tokens: int = Field(12, ge=3)
    # Decimal columns whose names contain one of these words are rates or model statistics
    # derived from checked counts or a checked model; other decimals (means, sums) need evidence.
    derived_words: tuple[str, ...] = (
        "rate", "rates", "percent", "percentage", "pct", "proportion", "prevalence", "incidence",
        "per", "ratio", "coef", "coefficient", "estimate", "se", "stderr", "err", "ci", "lower",
        "upper", "lcl", "ucl", "p", "pvalue", "t", "z", "or", "hr", "rr", "beta", "r2", "error", "aor",
        "ahr", "irr", "smr", "auc", "share", "prop", "%", "statistic", "correlation", "corr", "rho",
    )


class Encoded(_Strict):
    """Encoded payloads and other high-entropy text."""

    # A token must be this long to count towards an encoded run (shorter ones are words).
    min_token: int = Field(20, ge=8)
    # Tokens of this many bits of entropy per character or more are counted as encoded even
    # outside the base64 and hex alphabets (ascii85, custom alphabets).
    entropy_bits: float = Field(4.6, ge=2.0, le=8.0)
    # This many invisible characters (zero-width, control, private use) in one text, or lines
    # ending in mixed tabs and spaces, could carry data and fail.
    max_hidden: int = Field(8, ge=1)


class Images(_Strict):
    """What a PNG or JPEG may hold besides its pixels."""

    # PNG chunks that carry only how to draw the pixels. Anything else (tEXt, zTXt, iTXt,
    # eXIf, iCCP, private chunks) fails, as do bytes after IEND.
    png_chunks_allowed: tuple[str, ...] = ("IHDR", "PLTE", "IDAT", "IEND", "tRNS", "gAMA", "cHRM", "sRGB",
                                           "bKGD", "pHYs", "sBIT")
    # tEXt chunks allowed anyway, as regular expressions over "keyword: text" (the whole
    # chunk must match): the version stamp matplotlib writes into every PNG.
    png_text_allowed: tuple[str, ...] = (r"Software: [Mm]atplotlib version ?[0-9A-Za-z.+\-]{1,30}, https://matplotlib\.org/?",)
    # Verdict for an image that holds nothing but pixel data. "review" sends every picture
    # to a person even when it is clean; the reviewers see every file in any case.
    clean: Verdict = Verdict.PASS
    # Pixels that look like encoded data rather than a drawing: the share of pixels that
    # differ sharply from both their left and upper neighbours, in any 32x32 window (a window
    # of chart text reaches about a third) and over the whole image (a chart: a few percent);
    # bytes stored as pixel values make most pixels rough.
    max_rough_share: float = Field(0.45, gt=0.0, le=1.0)
    max_rough_image: float = Field(0.15, gt=0.0, le=1.0)
    # Verdict for such a noise-like image ("review": a person looks at it; "fail": refuse).
    noise: Verdict = Verdict.REVIEW
    # Hidden data in the low bits (1 or 2) of each channel of a PNG: among runs of five
    # neighbouring values whose upper bits are equal, the share whose middle three low bits flip
    # and flip back. A rendered chart has almost none (flat areas are flat, gradients step one
    # way); random bits flip about a quarter. Above this share (in any mostly flat band of 8x32
    # pixels) the image fails.
    max_low_bit_flips: float = Field(0.08, gt=0.0, le=1.0)
    # Largest image (in pixels) whose pixels are judged; a larger one goes to a reviewer.
    max_judged_pixels: int = Field(4_000_000, ge=10_000)


class Notebooks(_Strict):
    """What a Jupyter notebook may carry besides its cells' sources and outputs."""

    # Keys allowed in the notebook's metadata and in every cell's metadata. Any other key
    # (including widget state and tool-specific blobs) fails.
    metadata_allowed: list[str] = Field(default_factory=lambda: [
        "kernelspec", "language_info", "tags", "collapsed", "scrolled", "jupyter", "execution",
        "editable", "deletable", "name", "papermill",
    ])
    # Output mime types the checker can read. Any other (widgets, vendor types) fails.
    mime_types_allowed: list[str] = Field(default_factory=lambda: [
        "text/plain", "text/html", "text/markdown", "text/latex", "image/png", "image/jpeg",
        "application/json", "application/vnd.dataresource+json",
    ])
    # Keys allowed in an output's own metadata besides the allowed mime types.
    output_metadata_allowed: list[str] = Field(default_factory=lambda: [
        "isolated", "width", "height", "needs_background", "unconfined",
    ])
    # Largest execution count a cell may show. A kernel numbers its runs 1, 2, 3 ...; a count
    # above this, or above 100 plus 20 per cell, is no run number (a date of birth?) and fails.
    max_execution_count: int = Field(5000, ge=100)


class DisclosurePolicy(BaseModel):
    """Thresholds and limits for every disclosure rule; defaults follow the guidance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "2026.1"
    threshold: int = Field(10, ge=1)
    zeros_disclosive: bool = True
    nk_dominance: NKDominance = NKDominance()
    p_percent: float = Field(0.1, ge=0.0, le=1.0)
    dof: int = Field(10, ge=1)
    # Dominance is undefined for cells holding negative or missing values.
    negative_values: Verdict = Verdict.REVIEW
    missing_values: Verdict = Verdict.REVIEW
    rounding: Rounding = Rounding()
    suppressed_markers: tuple[str, ...] = ("*", "c", "[c]", "x", "<10", "suppressed", "redacted", "-")
    checker: CheckerLimits = CheckerLimits()
    row_level: RowLevel = RowLevel()
    encoded: Encoded = Encoded()
    images: Images = Images()
    notebooks: Notebooks = Notebooks()


def load_disclosure_policy(path: Path | str | None = None, *, site: Path | str = SITE_POLICY_FILE) -> DisclosurePolicy:
    """The policy at ``path``; else the site's, where a workspace container mounts it
    (``site``: /etc/enclave/policies/disclosure.yaml); else ``$ENCLAVE_DISCLOSURE_POLICY``;
    else the defaults (a laptop, outside any enclave).

    In a container the site's file wins over the environment variable: a table made under
    other rules would not be reproduced when it is submitted (the enclave re-runs it under
    the site's policy), so the library never picks such rules up by accident. A mounted
    folder without the file is an error, never the defaults.

    Raises ``enclave.errors.PolicyError`` (one line) when the file is missing or invalid.
    """
    if path is None and Path(site).parent.is_dir():
        path = site
    if path is None:
        path = os.environ.get(POLICY_ENV) or None
    if path is None:
        return DisclosurePolicy()
    return load_policy_file(Path(path), DisclosurePolicy)
