"""Jupyter notebooks: every cell's source, every output of every mime type, attachments and
metadata are checked; anything outside the notebook format's known places, metadata keys
beyond ``notebooks.metadata_allowed`` and mime types beyond ``notebooks.mime_types_allowed``
fail. Collapsed or hidden outputs are checked like any other.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from enclave.disclosure.checker.dates import find_dates
from enclave.disclosure.checker.parts import Parts
from enclave.disclosure.checker.registry import Part, PartKind, check
from enclave.disclosure.checker.tables import MAX_LOCATIONS
from enclave.disclosure.findings import Finding, excerpt
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict

NOTEBOOK_KEYS = frozenset({"cells", "metadata", "nbformat", "nbformat_minor"})
CELL_KEYS = frozenset({"id", "cell_type", "source", "metadata", "outputs", "execution_count", "attachments"})
CELL_TYPES = frozenset({"code", "markdown", "raw"})
OUTPUT_KEYS = frozenset({"output_type", "name", "text", "data", "metadata", "execution_count", "ename", "evalue", "traceback"})
OUTPUT_TYPES = frozenset({"stream", "execute_result", "display_data", "error"})
IMAGE_MIMES = {"image/png": "png", "image/jpeg": "jpeg"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # nbformat 4.5


def joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)


def add_notebook(notebook: dict, parts: Parts) -> None:
    """The notebook's structure, and every text, table and image in it, as parts."""
    parts.parts.append(Part(PartKind.NOTEBOOK, "notebook", value=notebook))
    for key, value in notebook.items():
        if key not in ("cells", "nbformat", "nbformat_minor"):
            parts.add_json(value, f"notebook {key}")
    cells = notebook.get("cells") if isinstance(notebook.get("cells"), list) else []
    for c, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            parts.add_json(cell, f"cell {c}")
            continue
        where = f"cell {c}"
        source = joined(cell.get("source", ""))
        parts.add_text(source, f"{where} source")
        if cell.get("cell_type") == "code":
            parts.add_python(source, f"{where} source")
        for key, value in cell.items():
            if key not in ("source", "outputs", "attachments", "cell_type", "id", "execution_count"):
                parts.add_json(value, f"{where} {key}")
        for name, bundle in (cell.get("attachments") or {}).items() if isinstance(cell.get("attachments"), dict) else []:
            _bundle(bundle, f"{where} attachment {name!r}", parts)
        outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
        for o, output in enumerate(outputs, start=1):
            at = f"{where} output {o}"
            if not isinstance(output, dict):
                parts.add_json(output, at)
                continue
            kind = output.get("output_type")
            if kind == "stream" or "text" in output:
                parts.add_text(_ANSI.sub("", joined(output.get("text", ""))), f"{at} ({output.get('name', 'stream')})")
            if kind == "error" or "traceback" in output:
                lines = [str(output.get("ename", "")), str(output.get("evalue", ""))] + [str(t) for t in output.get("traceback") or []]
                parts.add_text(_ANSI.sub("", "\n".join(lines)), f"{at} (error)")
            if "data" in output:
                _bundle(output.get("data"), at, parts)
            for key, value in output.items():
                if key not in ("output_type", "name", "text", "data", "ename", "evalue", "traceback", "execution_count"):
                    parts.add_json(value, f"{at} {key}")


def _bundle(bundle: Any, where: str, parts: Parts) -> None:
    """A mime bundle: images decoded and checked as images, the rest as text or JSON."""
    if not isinstance(bundle, dict):
        parts.add_json(bundle, where)
        return
    for mime, content in bundle.items():
        at = f"{where} ({mime})"
        if mime in IMAGE_MIMES:
            try:
                data = base64.b64decode("".join(joined(content).split()), validate=True)
            except (binascii.Error, ValueError):
                parts.findings.append(Finding("image", Verdict.FAIL, f"{at}: not valid base64 image data",
                                              locations=[f"{at}: {excerpt(joined(content))}"]))
                continue
            parts.parts.append(Part(PartKind.IMAGE, at, data=data, origin=IMAGE_MIMES[mime]))
        elif isinstance(content, (dict, list)) or mime.endswith("json"):
            value = content
            if isinstance(content, str):
                try:
                    value = json.loads(content)
                except json.JSONDecodeError:
                    parts.add_text(content, at)
                    continue
            parts.add_json(value, at)
        else:
            parts.add_text(joined(content), at)


def _keys(mapping: Any, allowed: set[str] | frozenset[str], where: str, out: list[str]) -> None:
    if not isinstance(mapping, dict):
        if mapping is not None:
            out.append(f"{where} is not a mapping: {excerpt(mapping)}")
        return
    for key, value in mapping.items():
        if key not in allowed:
            out.append(f"{where} {key!r}: {excerpt(json.dumps(value, default=str))}")


def _run_numbers(counts: list[tuple[str, Any]], cells: int, policy: DisclosurePolicy) -> list[str]:
    """Execution counts that are no kernel's run numbers: too large, or in no order."""
    bound = min(policy.notebooks.max_execution_count, 100 + 20 * cells)
    problems = [f"{where} has execution count {count}, more than a kernel numbers its runs (at most {bound} here; "
                f"restart the kernel, run all cells and save again)"
                for where, count in counts if count < 0 or count > bound]
    values = [count for _, count in counts]
    falls = sum(b < a for a, b in zip(values, values[1:]))
    if len(values) >= 10 and falls * 5 > 2 * (len(values) - 1):
        problems.append(f"the execution counts go down {falls} times in {len(values)} cells, which no run order does: "
                        f"{excerpt(' '.join(map(str, values)))}")
    return problems


@check("notebook_structure", PartKind.NOTEBOOK, "metadata beyond the allowlist, unknown mime types, output kinds and keys")
def notebook_structure(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    notebook = part.value
    allowed_meta = set(policy.notebooks.metadata_allowed)
    mimes = set(policy.notebooks.mime_types_allowed)
    output_meta = mimes | set(policy.notebooks.output_metadata_allowed)
    structure: list[str] = []
    metadata: list[str] = []
    outputs: list[str] = []
    _keys(notebook, NOTEBOOK_KEYS, "notebook key", structure)
    _keys(notebook.get("metadata", {}), allowed_meta, "notebook metadata", metadata)
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        structure.append("the notebook has no list of cells")
        cells = []
    counts: list[tuple[str, Any]] = []
    for c, cell in enumerate(cells, start=1):
        where = f"cell {c}"
        if not isinstance(cell, dict):
            structure.append(f"{where} is not a cell: {excerpt(cell)}")
            continue
        if cell.get("cell_type") not in CELL_TYPES:
            structure.append(f"{where} has unknown cell type {excerpt(cell.get('cell_type'))}")
        _keys(cell, CELL_KEYS, f"{where} key", structure)
        cell_id = cell.get("id")
        if cell_id is not None and not (isinstance(cell_id, str) and _CELL_ID.fullmatch(cell_id) and not find_dates(cell_id)):
            structure.append(f"{where} has an id outside the notebook format: {excerpt(cell_id)}")
        count = cell.get("execution_count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            structure.append(f"{where} has an execution count that is no number: {excerpt(count)}")
        elif count is not None:
            counts.append((where, count))
        _keys(cell.get("metadata", {}), allowed_meta, f"{where} metadata", metadata)
        attachments = cell.get("attachments") or {}
        if not isinstance(attachments, dict):
            structure.append(f"{where} attachments are not a mapping")
            attachments = {}
        for name, bundle in attachments.items():
            for mime in bundle if isinstance(bundle, dict) else []:
                if mime not in IMAGE_MIMES or mime not in mimes:
                    outputs.append(f"{where} attachment {name!r} of type {mime!r}")
        for o, output in enumerate(cell.get("outputs") or [], start=1):
            at = f"{where} output {o}"
            if not isinstance(output, dict) or output.get("output_type") not in OUTPUT_TYPES:
                outputs.append(f"{at} of unknown kind {excerpt(output.get('output_type') if isinstance(output, dict) else output)}")
                continue
            _keys(output, OUTPUT_KEYS, f"{at} key", structure)
            if output.get("output_type") == "stream" and output.get("name") not in ("stdout", "stderr"):
                structure.append(f"{at} is a stream named {excerpt(output.get('name'))}, not stdout or stderr")
            data = output.get("data") or {}
            for mime in data if isinstance(data, dict) else []:
                if mime not in mimes:
                    outputs.append(f"{at} of type {mime!r}: {excerpt(joined(data[mime]))}")
            _keys(output.get("metadata", {}), output_meta, f"{at} metadata", metadata)
            if "execution_count" in output and output["execution_count"] != cell.get("execution_count"):
                structure.append(f"{at} has execution count {excerpt(output['execution_count'])}, not its cell's")
    structure += _run_numbers(counts, len(cells), policy)
    findings = []
    if metadata:
        findings.append(Finding("notebook_metadata", Verdict.FAIL,
                                f"{len(metadata)} metadata key(s) outside the allowed ({', '.join(sorted(allowed_meta))}); clear them (e.g. nbstripout) and save again: {metadata[0]}",
                                locations=metadata[:MAX_LOCATIONS]))
    if outputs:
        findings.append(Finding("notebook_output", Verdict.FAIL,
                                f"{len(outputs)} output(s) of a kind the checker cannot read; clear them or show them as text, a table or a PNG: {outputs[0]}",
                                locations=outputs[:MAX_LOCATIONS]))
    if structure:
        findings.append(Finding("notebook_structure", Verdict.FAIL,
                                f"{len(structure)} part(s) of the file outside the notebook format; save it again from Jupyter: {structure[0]}",
                                locations=structure[:MAX_LOCATIONS]))
    return findings
