"""Build the output-checking corpus from the synthetic demo data.

Disguised bad outputs (row-level data smuggled out in every shape the classes of attack
name) and realistic safe outputs (tables made with ``enclave.safe``, a regression summary,
a rates table, a methods note, a notebook with a plot ...). Deterministic: the same demo
data and seed give the same files.

    .venv/bin/python tests/corpus/make_corpus.py OUT_DIR

writes the files and ``manifest.json`` (one entry per file: its name, ``bad`` or ``safe``,
its class, and for safe ``enclave.safe`` tables the name of the evidence the library wrote).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import re
import struct
import sys
import urllib.parse
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from enclave.demo.synthetic import REFERENCE_DATE, generate  # noqa: E402
from enclave.disclosure import DisclosurePolicy  # noqa: E402
from enclave.disclosure.evidence import sidecar_path  # noqa: E402
from enclave.safe import crosstab, describe, histogram, ols  # noqa: E402

SEED = 11
PATIENTS = 3000


@dataclass(frozen=True)
class Item:
    file: str
    expect: str  # "bad" or "safe"
    kind: str  # the class of attack (bad) or of output (safe)
    evidence: str | None = None


class Corpus:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.items: list[Item] = []

    def bad(self, name: str, kind: str, content: str | bytes) -> Path:
        return self._write(name, content, Item(name, "bad", kind))

    def safe(self, name: str, kind: str, content: str | bytes) -> Path:
        return self._write(name, content, Item(name, "safe", kind))

    def _write(self, name: str, content: str | bytes, item: Item) -> Path:
        path = self.out / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        self.items.append(item)
        return path

    def safe_result(self, name: str, kind: str, result) -> None:  # type: ignore[no-untyped-def]
        path = result.save(self.out / name, datasets={"synthetic": f"seed-{SEED}"})
        sidecar = sidecar_path(path)
        evidence = json.loads(sidecar.read_text())
        evidence["created"] = "2026-01-01T00:00:00+00:00"  # a fixed time keeps the corpus byte-identical
        sidecar.write_text(json.dumps(evidence, indent=1))
        self.items.append(Item(name, "safe", kind, sidecar.name))


# --- helpers --------------------------------------------------------------------------------


def _png(width: int, height: int, draw=None) -> bytes:  # type: ignore[no-untyped-def]
    image = Image.new("RGB", (width, height), (255, 255, 255))
    if draw:
        draw(ImageDraw.Draw(image))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _bars(counts: list[int]):  # type: ignore[no-untyped-def]
    def draw(canvas: ImageDraw.ImageDraw) -> None:
        top = max(counts)
        for i, c in enumerate(counts):
            canvas.rectangle([10 + i * 28, 190 - int(170 * c / top), 32 + i * 28, 190], fill=(40, 90, 160))
        canvas.line([8, 191, 300, 191], fill=(0, 0, 0))
    return draw


def _line_plot(values: list[float]) -> bytes:
    """An anti-aliased line with axes and labels, as a plotting library renders it (drawn large, scaled down)."""
    scale = 4
    image = Image.new("RGB", (480 * scale, 320 * scale), "white")
    canvas = ImageDraw.Draw(image)
    canvas.line([(40 * scale, 20 * scale), (40 * scale, 280 * scale), (460 * scale, 280 * scale)], fill="black", width=2 * scale)
    points = [((50 + i * 400 / max(len(values) - 1, 1)) * scale, (270 - 240 * v) * scale) for i, v in enumerate(values)]
    canvas.line(points, fill=(31, 119, 180), width=3 * scale, joint="curve")
    for i in range(5):
        canvas.text((4 * scale, (270 - 60 * i) * scale), f"{i / 4:.2f}", fill="black", font_size=11 * scale)
    buffer = io.BytesIO()
    image.resize((480, 320), Image.LANCZOS).save(buffer, "PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _insert_chunk(png: bytes, chunk: bytes) -> bytes:
    """Insert a chunk right after IHDR (8-byte signature + 25-byte IHDR)."""
    return png[:33] + chunk + png[33:]


def _jpeg(draw=None, **options) -> bytes:  # type: ignore[no-untyped-def]
    image = Image.new("RGB", (96, 64), (250, 250, 250))
    if draw:
        draw(ImageDraw.Draw(image))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, **options)
    return buffer.getvalue()


def _notebook(cells: list[dict], metadata: dict | None = None) -> str:
    meta = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.13.0"}}
    meta.update(metadata or {})
    return json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}, indent=1)


def _code(source: str, outputs: list[dict] | None = None, metadata: dict | None = None, n: int = 1) -> dict:
    return {"cell_type": "code", "execution_count": n, "id": f"c{n:04d}", "metadata": metadata or {},
            "outputs": outputs or [], "source": source}


def _markdown(source: str, n: int, attachments: dict | None = None) -> dict:
    cell = {"cell_type": "markdown", "id": f"m{n:04d}", "metadata": {}, "source": source}
    if attachments:
        cell["attachments"] = attachments
    return cell


def _stream(text: str) -> dict:
    return {"name": "stdout", "output_type": "stream", "text": text}


def _display(data: dict, metadata: dict | None = None) -> dict:
    return {"data": data, "metadata": metadata or {}, "output_type": "display_data"}


def _words(date: dt.date) -> str:
    return f"{date.day} {date.strftime('%B')} {date.year}"


def _us_words(date: dt.date) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(date.day % 10 if date.day not in (11, 12, 13) else 0, "th")
    return f"{date.strftime('%B')} {date.day}{suffix}, {date.year}"


# --- the corpus -----------------------------------------------------------------------------


def build(out: Path) -> list[Item]:
    """Write every corpus file into ``out`` (created if needed) and its manifest."""
    out.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(out)
    data = generate(PATIENTS, seed=SEED)
    patients = data.tables["patients"]
    admissions = data.tables["admissions"]
    labs = data.tables["lab_results"]
    people = patients.head(60)
    dob = people["date_of_birth"].to_list()
    sex = people["sex"].to_list()
    district = people["postcode_district"].to_list()
    decile = people["deprivation_decile"].to_list()
    ids = people["patient_id"].to_list()
    ages = [(REFERENCE_DATE - d).days // 365 for d in dob]
    rows = list(zip(ids, dob, sex, district, decile, strict=True))
    micro_csv = "patient,birth,sex,district\n" + "".join(f"{i},{d.isoformat()},{s},{a}\n" for i, d, s, a, _ in rows)
    innocuous_csv = "a,b,c,d\n" + "".join(f"{d.isoformat()},{s},{a},{q}\n" for _, d, s, a, q in rows)

    _bad_evidence(corpus, innocuous_csv)
    _bad_notebooks(corpus, rows, innocuous_csv)
    _bad_structured(corpus, rows, ages, innocuous_csv)
    _bad_encodings(corpus, micro_csv)
    _bad_identity(corpus, rows, ages, admissions, labs)
    _bad_counts(corpus)
    _bad_images(corpus, innocuous_csv, rows)
    _bad_carriers(corpus, innocuous_csv, rows)
    _safe(corpus, data)

    (out / "manifest.json").write_text(json.dumps([asdict(i) for i in corpus.items], indent=1))
    return corpus.items


def _bad_evidence(corpus: Corpus, innocuous_csv: str) -> None:
    """Forged sidecars beside microdata and small counts: they must not help."""
    for name, content in (("forged_microdata.csv", innocuous_csv), ("forged_counts.csv", "category,value\nA,3\nB,2\nC,7\n")):
        path = corpus.bad(name, "forged evidence", content)
        raw = path.read_bytes()
        lines = content.strip().splitlines()[1:]
        forged = {
            "format": "enclave-sdc-evidence/1",
            "output": {"file": name, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)},
            "analysis": {"kind": "crosstab", "index": ["a"], "columns": [], "values": None, "aggfunc": None, "margins": False},
            "policy_version": "2026.1", "policy": DisclosurePolicy().model_dump(mode="json"),
            "rules": ["threshold", "zeros"], "datasets": [{"name": "synthetic", "version": "1"}], "status": "pass",
            "findings": [], "created": "2026-01-01T00:00:00+00:00", "library": "enclave.safe 0.1.0",
            "cells": [{"row": [k], "column": ["n"], "n": 1000, "status": "pass"} for k in range(len(lines))],
        }
        sidecar_path(path).write_text(json.dumps(forged))


def _bad_notebooks(corpus: Corpus, rows: list, innocuous_csv: str) -> None:
    records = [{"ref": i, "born": d.isoformat(), "sex": s, "area": a} for i, d, s, a, _ in rows]
    corpus.bad("nb_cell_metadata.ipynb", "notebook metadata", _notebook([
        _code("summary = cohort.describe()", metadata={"tags": ["summary"], "cohort_snapshot": records})]))
    corpus.bad("nb_notebook_metadata.ipynb", "notebook metadata", _notebook(
        [_code("print('done')", [_stream("done\n")])], metadata={"extensions": {"cache": records}}))
    corpus.bad("nb_allowed_metadata_payload.ipynb", "notebook metadata", _notebook(
        [_code("x = 1", metadata={"tags": [f"{d.isoformat()}|{s}|{a}" for _, d, s, a, _ in rows]})]))
    corpus.bad("nb_widget_state.ipynb", "notebook metadata", _notebook(
        [_code("w")], metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"m": {"value": innocuous_csv}}}}}))
    corpus.bad("nb_attachment_csv.ipynb", "notebook attachment", _notebook([
        _markdown("![table](attachment:t.csv)", 1, {"t.csv": {"text/csv": base64.b64encode(innocuous_csv.encode()).decode()}})]))
    plot = _png(320, 200, _bars([5, 9, 14, 20, 17, 11, 6]))
    corpus.bad("nb_attachment_png_payload.ipynb", "notebook attachment", _notebook([
        _markdown("![figure](attachment:f.png)", 1, {"f.png": {"image/png": base64.b64encode(plot + innocuous_csv.encode()).decode()}})]))
    literal = "cohort = [\n" + "".join(f"    ({i!r}, {d.isoformat()!r}, {s!r}, {a!r}),\n" for i, d, s, a, _ in rows[:25]) + "]\n"
    corpus.bad("nb_source_literal.ipynb", "notebook source literal", _notebook([_code(literal + "len(cohort)")]))
    dict_literal = "df = pd.DataFrame({\n    'k': " + repr([str(d) for _, d, _, _, _ in rows[:30]]) + ",\n    'g': " + repr([s for *_, s, _, _ in rows[:30]]) + "})\n"
    corpus.bad("nb_source_dataframe.ipynb", "notebook source literal", _notebook([_code(dict_literal)]))
    corpus.bad("nb_hidden_output.ipynb", "notebook hidden output", _notebook([
        _code("show(cohort)", [_stream(innocuous_csv)], metadata={"collapsed": True, "jupyter": {"outputs_hidden": True}})]))
    schema = {"schema": {"fields": [{"name": "born", "type": "string"}, {"name": "sex", "type": "string"}, {"name": "area", "type": "string"}],
                         "pandas_version": "1.4.0"},
              "data": [{"born": d.isoformat(), "sex": s, "area": a} for _, d, s, a, _ in rows]}
    corpus.bad("nb_table_schema.ipynb", "notebook vendor mime", _notebook([
        _code("cohort", [{"data": {"application/vnd.dataresource+json": schema, "text/plain": "<table>"},
                          "execution_count": 1, "metadata": {}, "output_type": "execute_result"}])]))
    corpus.bad("nb_vendor_mime.ipynb", "notebook vendor mime", _notebook([
        _code("cohort", [_display({"application/vnd.acme.grid+json": {"rows": 60}, "text/plain": "grid"})])]))
    corpus.bad("nb_stdout_csv.ipynb", "notebook stdout csv", _notebook([_code("print(cohort.to_csv())", [_stream(innocuous_csv)])]))
    corpus.bad("nb_stderr_tsv.ipynb", "notebook stdout csv", _notebook([
        _code("log(cohort)", [{"name": "stderr", "output_type": "stream", "text": innocuous_csv.replace(",", "\t")}])]))
    frame = pd.DataFrame([{"born": d.isoformat(), "sex": s, "area": a} for _, d, s, a, _ in rows[:20]])
    corpus.bad("nb_printed_frame.ipynb", "notebook printed frame", _notebook([
        _code("cohort.head(20)", [{"data": {"text/plain": frame.to_string()}, "execution_count": 1, "metadata": {},
                                   "output_type": "execute_result"}])]))
    corpus.bad("nb_html_frame.ipynb", "notebook html table", _notebook([
        _code("cohort.head(20)", [{"data": {"text/html": frame.to_html()}, "execution_count": 1, "metadata": {},
                                   "output_type": "execute_result"}])]))
    corpus.bad("nb_png_after_iend.ipynb", "notebook image payload", _notebook([
        _code("plot()", [_display({"image/png": base64.b64encode(plot + innocuous_csv.encode()).decode(), "text/plain": "<Figure>"})])]))
    nb = json.loads(_notebook([_code("x = 1")]))
    nb["x-extra"] = records
    corpus.bad("nb_extra_top_key.ipynb", "notebook structure", json.dumps(nb))
    corpus.bad("nb_output_metadata.ipynb", "notebook metadata", _notebook([
        _code("plot()", [_display({"text/plain": "<Figure>"}, metadata={"provenance": records})])]))
    corpus.bad("nb_markdown_html.ipynb", "notebook markdown table", _notebook([_markdown(
        "Cohort\n\n<table><tr><th>born</th><th>sex</th></tr>" + "".join(f"<tr><td>{d}</td><td>{s}</td></tr>" for _, d, s, _, _ in rows[:15]) + "</table>", 1)]))


def _bad_structured(corpus: Corpus, rows: list, ages: list[int], innocuous_csv: str) -> None:
    records = [{"born": d.isoformat(), "sex": s, "area": a, "decile": q} for _, d, s, a, q in rows[:20]]
    corpus.bad("records.json", "json records", json.dumps({"result": records}, indent=1))
    corpus.bad("records_in_text.txt", "json records", "Results follow.\n" + json.dumps(records) + "\n")
    corpus.bad("columns.json", "json columns", json.dumps({
        "born": [r["born"] for r in records], "sex": [r["sex"] for r in records], "area": [r["area"] for r in records]}))
    corpus.bad("index_orient.json", "json columns", pd.DataFrame(records).to_json(orient="index"))
    corpus.bad("split_orient.json", "json lists of lists", pd.DataFrame(records).to_json(orient="split"))
    corpus.bad("config_lists.json", "json lists of lists", json.dumps({
        "plot": {"style": "bar", "palette": {"layers": [[d.isoformat(), s, a] for _, d, s, a, _ in rows[:30]]}}}))
    corpus.bad("bare_ages.json", "bare numbers", json.dumps({"run": "sensitivity", "values": ages}))
    corpus.bad("bare_numbers.txt", "bare numbers", "ages: " + str(np.array(ages[:40])) + "\n")
    corpus.bad("few_rows.csv", "fewer rows than the floor", "\n".join(innocuous_csv.splitlines()[:9]) + "\n")
    md = "# Cohort\n\n| born | sex | area |\n|---|---|---|\n" + "".join(f"| {d} | {s} | {a} |\n" for _, d, s, a, _ in rows[:20])
    corpus.bad("markdown_rows.md", "markdown table", md)
    html = "# Appendix\n\nSee below.\n\n<table>\n<tr><th>ref</th><th>area</th><th>born</th></tr>\n" + "".join(
        f"<tr><td>{i}</td><td>{a}</td><td>{d}</td></tr>\n" for i, d, _, a, _ in rows[:20]) + "</table>\n"
    corpus.bad("html_in_markdown.md", "html in markdown", html)
    corpus.bad("csv_as_txt.txt", "csv saved as txt", innocuous_csv)
    corpus.bad("tsv_as_md.md", "csv saved as txt", innocuous_csv.replace(",", "\t"))
    corpus.bad("semicolon.txt", "csv saved as txt", innocuous_csv.replace(",", ";"))
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="400" height="900">\n' + "".join(
        f'<text x="10" y="{15 * (k + 1)}">{d} {s} {a}</text>\n' for k, (_, d, s, a, _) in enumerate(rows[:40])) + "</svg>\n")
    corpus.bad("figure_svg.md", "svg saved as md", svg)
    svg_data = ('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><metadata>' + innocuous_csv +
                '</metadata><rect width="10" height="10"/></svg>\n')
    corpus.bad("figure_metadata_svg.md", "svg saved as md", svg_data)
    printed = pd.DataFrame([{"ref": i, "born": d.isoformat(), "sex": s} for i, d, s, _, _ in rows[:25]]).to_string()
    corpus.bad("printed_frame.txt", "fixed-width text", printed + "\n")
    fixed = "".join(f"{d.strftime('%d/%m/%Y'):<12}{s:<4}{a:<6}\n" for _, d, s, a, _ in rows[:25])
    corpus.bad("fixed_width.txt", "fixed-width text", fixed)


def _bad_encodings(corpus: Corpus, micro_csv: str) -> None:
    raw = micro_csv.encode()
    wrapped = base64.encodebytes(raw).decode()  # 76-character lines
    corpus.bad("base64_wrapped.txt", "base64", "Appendix B (archive):\n" + wrapped)
    corpus.bad("base64_markdown.md", "base64", "## Supplement\n\n```\n" + base64.b64encode(raw).decode() + "\n```\n")
    corpus.bad("base64_short_lines.md", "base64", "\n".join(f"> {line}" for line in
                                                              [base64.b64encode(raw).decode()[i:i + 40] for i in range(0, 4000, 40)]) + "\n")
    corpus.bad("hex_spaced.txt", "hex", binascii.hexlify(raw[:2000], " ").decode() + "\n")
    corpus.bad("hex_colons.txt", "hex", binascii.hexlify(raw[:2000], ":").decode() + "\n")
    dump = "".join(f"{o:08x}: " + " ".join(raw[o:o + 16][k:k + 2].hex() for k in range(0, 16, 2)) + "  "
                   + "".join(chr(b) if 32 <= b < 127 else "." for b in raw[o:o + 16]) + "\n" for o in range(0, 1600, 16))
    corpus.bad("xxd_dump.txt", "hex", dump)
    corpus.bad("hex_in_json.json", "hex", json.dumps({"model": "ols", "weights": raw[:1500].hex()}))
    corpus.bad("ascii85.txt", "high entropy", "checksum block: " + base64.a85encode(zlib.compress(raw)).decode() + "\n")
    corpus.bad("base32.txt", "base64", base64.b32encode(raw[:1200]).decode() + "\n")


def _bad_identity(corpus: Corpus, rows: list, ages: list[int], admissions: pl.DataFrame, labs: pl.DataFrame) -> None:
    corpus.bad("year_first_slashes.csv", "dates", "Reference date,Group\n" + "".join(f"{d.strftime('%Y/%m/%d')},{s}\n" for _, d, s, _, _ in rows[:40]))
    corpus.bad("day_first.csv", "dates", "when,grp,val\n" + "".join(f"{d.strftime('%d/%m/%Y')},{s},{q}\n" for _, d, s, _, q in rows[:40]))
    corpus.bad("dates_in_words.csv", "dates", "label,when\n" + "".join(f"R{k},{_words(d)}\n" for k, (_, d, _, _, _) in enumerate(rows[:30])))
    corpus.bad("dates_us_words.md", "dates", "Notes on the cases:\n\n" + "".join(f"- seen {_us_words(d)}\n" for _, d, _, _, _ in rows[:20]))
    corpus.bad("reference_date.csv", "dates", "Reference date,Region,Value\n" + "".join(
        f"{d.isoformat()},{a},{v:.1f}\n" for (_, d, _, a, _), v in zip(rows[:40], np.linspace(3.1, 9.7, 40), strict=True)))
    corpus.bad("compact_dates.csv", "dates", "k,v\n" + "".join(f"{d.strftime('%Y%m%d')},{s}\n" for _, d, s, _, _ in rows[:30]))
    head = admissions.head(40)
    corpus.bad("admission_times.csv", "dates", "start,end,unit\n" + "".join(
        f"{a},{b},{u}\n" for a, b, u in zip(head["admitted_at"].to_list(), head["discharged_at"].to_list(), head["specialty"].to_list(), strict=True)))
    lab = labs.head(40)
    corpus.bad("keys_and_values.csv", "identifiers", "k,v\n" + "".join(f"{p},{v}\n" for p, v in zip(lab["patient_id"].to_list(), lab["value"].to_list(), strict=True)))
    corpus.bad("quasi_identifiers.csv", "quasi identifiers", "v1,v2,v3\n" + "".join(
        f"{s},{a},{age}\n" for (_, _, s, a, _), age in zip(rows[:40], ages[:40], strict=True)))
    corpus.bad("quasi_no_measure.csv", "quasi identifiers", "x,y,z\n" + "".join(f"{s},{a},{d.year}-{d.month:02d}\n" for _, d, s, a, _ in rows[:30]))
    corpus.bad("nhs_numbers.txt", "identifiers", "Follow-up list: " + ", ".join(
        ["9434765919", "9434765870", "4010232137"]) + "\n")


def _bad_counts(corpus: Corpus) -> None:
    corpus.bad("n_percent.csv", "counts in strings", "Characteristic,Cases\nAged 18-39,3 (1.5%)\nAged 40-64,120 (60.0%)\nAged 65+,77 (38.5%)\n")
    corpus.bad("n_equals.csv", "counts in strings", "group,detail\nWard A,n=4\nWard B,n=37\n")
    corpus.bad("fractions.md", "counts in strings", "| Site | Outcome |\n|---|---|\n| North | 4/120 |\n| South | 31/140 |\n")
    corpus.bad("first_column_counts.csv", "counts in first column", "Group,Area\n3,North\n2,South\n7,East\n")
    corpus.bad("unnamed_first_column.csv", "counts in first column", ",Area\n3,North\n2,South\n7,East\n")
    corpus.bad("table1_small.md", "counts in strings", "| Characteristic | n (%) |\n|---|---|\n| Male | 2 (0.9%) |\n| Female | 215 (99.1%) |\n")


def _bad_images(corpus: Corpus, innocuous_csv: str, rows: list) -> None:
    plot = _png(320, 200, _bars([40, 90, 140, 200, 170, 110, 60]))
    payload = innocuous_csv.encode()
    corpus.bad("png_after_iend.png", "image trailing bytes", plot + payload)
    corpus.bad("png_text_chunk.png", "image text chunk", _insert_chunk(plot, _chunk(b"tEXt", b"Comment\x00" + payload)))
    corpus.bad("png_ztxt_chunk.png", "image text chunk", _insert_chunk(plot, _chunk(b"zTXt", b"Raw\x00\x00" + zlib.compress(payload))))
    corpus.bad("png_itxt_chunk.png", "image text chunk", _insert_chunk(plot, _chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + payload)))
    corpus.bad("png_private_chunk.png", "image text chunk", _insert_chunk(plot, _chunk(b"prVt", payload)))
    corpus.bad("png_exif_chunk.png", "image exif", _insert_chunk(plot, _chunk(b"eXIf", b"MM\x00*" + payload)))
    # extra bytes inside the compressed pixel stream, past the pixels the header declares
    png = plot
    ihdr_end, idat_start = 33, 33
    length = struct.unpack(">I", png[idat_start:idat_start + 4])[0]
    pixels = zlib.decompress(png[idat_start + 8:idat_start + 8 + length])
    corpus.bad("png_idat_extra.png", "image pixel stream", png[:ihdr_end] + _chunk(b"IDAT", zlib.compress(pixels + payload)) + _chunk(b"IEND", b""))
    jpeg = _jpeg()
    corpus.bad("jpeg_comment.jpg", "image comment", jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload[:60000]) + 2) + payload[:60000] + jpeg[2:])
    exif = Image.Exif()
    exif[0x010E] = innocuous_csv[:2000]  # ImageDescription
    corpus.bad("jpeg_exif.jpg", "image exif", _jpeg(exif=exif.tobytes()))
    corpus.bad("jpeg_after_eoi.jpg", "image trailing bytes", jpeg + payload)


def _bad_carriers(corpus: Corpus, innocuous_csv: str, rows: list) -> None:
    """Data carried by pixel values, low bits, same-shaped tokens, URL escapes, execution counts."""
    payload = innocuous_csv.encode()
    side = int(np.ceil(np.sqrt(len(payload) / 3)))
    noise = np.frombuffer(payload + b"\0" * (side * side * 3 - len(payload)), dtype=np.uint8).reshape(side, side, 3)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    corpus.bad("png_bytes_as_pixels.png", "image pixel payload", buffer.getvalue())
    plot = np.asarray(Image.open(io.BytesIO(_png(320, 200, _bars([40, 90, 140, 200, 170, 110, 60])))).convert("RGB")).copy()
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    flat = plot.reshape(-1)
    flat[:len(bits)] = (flat[:len(bits)] & 0xFE) | bits
    buffer = io.BytesIO()
    Image.fromarray(plot).save(buffer, "PNG")
    corpus.bad("png_lowest_bits.png", "image pixel payload", buffer.getvalue())
    corpus.bad("tokens.txt", "quasi identifiers", "Cohort tokens: " + " ".join(f"{a}-{d.year}-{s}" for _, d, s, a, _ in rows))
    corpus.bad("url_query.txt", "csv saved as txt", "link: https://example.invalid/?q=" + urllib.parse.quote(innocuous_csv))
    corpus.bad("nb_execution_counts.ipynb", "notebook metadata",
               _notebook([_code("x", n=int(d.strftime("%Y%m%d"))) for _, d, _, _, _ in rows]))


def _safe(corpus: Corpus, data) -> None:  # type: ignore[no-untyped-def]
    patients = data.tables["patients"].with_columns(
        ((pl.lit(REFERENCE_DATE) - pl.col("date_of_birth")).dt.total_days() // 365).alias("age"))
    admissions = data.tables["admissions"].join(patients.select("patient_id", "age", "sex"), on="patient_id")
    labs = data.tables["lab_results"]
    policy = DisclosurePolicy()

    corpus.safe_result("crosstab_district_sex.csv", "suppressed crosstab", crosstab(patients, index="postcode_district", columns="sex", policy=policy))
    corpus.safe_result("los_by_specialty.csv", "crosstab of means", crosstab(admissions, index="specialty", columns="admission_method",
                                                                               values="length_of_stay_days", aggfunc="mean", policy=policy))
    hist = histogram(patients, "age", bins=10, range=(0, 100), policy=policy)
    corpus.safe_result("age_histogram.csv", "histogram", hist)
    hba1c = labs.filter(pl.col("test_code") == "HBA1C").select("value")
    corpus.safe_result("hba1c_describe.csv", "describe table", describe(hba1c, policy=policy))
    model_frame = admissions.select("length_of_stay_days", "age", "sex").filter(pl.col("sex") != "U")
    model = ols(model_frame, "length_of_stay_days ~ age + C(sex)", policy=policy)
    corpus.safe_result("los_model.csv", "regression coefficients", model)
    summary = str(model.extra.get("summary", ""))
    # statsmodels stamps the time of the fit; a fixed one keeps the corpus byte-identical
    summary = re.sub(r"Date:( +)[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4}", r"Date:\1Thu, 01 Jan 2026", summary)
    summary = re.sub(r"Time:( +)\d\d:\d\d:\d\d", r"Time:\g<1>12:00:00", summary)
    corpus.safe("los_model_summary.txt", "regression summary", summary + "\n")

    deaths = patients.group_by("postcode_district").agg(pl.len().alias("population"),
                                                         pl.col("date_of_death").is_not_null().sum().alias("deaths"))
    deaths = deaths.filter(pl.col("deaths") >= 10).sort("postcode_district")
    rates = "area,deaths,population,rate_per_1000,ci_lower,ci_upper\n" + "".join(
        f"{a},{d},{p},{1000 * d / p:.1f},{1000 * max(d - 1.96 * d ** 0.5, 0) / p:.1f},{1000 * (d + 1.96 * d ** 0.5) / p:.1f}\n"
        for a, p, d in deaths.iter_rows())
    corpus.safe("mortality_rates.csv", "rates table", rates)
    corpus.safe("methods.md", "methods note", METHODS_NOTE)

    counts = hist.table["count"].fillna(0).astype(int).tolist()
    plot = _png(320, 200, _bars([max(c, 1) for c in counts]))
    corpus.safe("age_histogram.png", "plot", plot)
    corpus.safe("rate_trend.png", "plot", _line_plot([c / max(counts) for c in counts]))
    corpus.safe("age_histogram.jpg", "plot", _jpeg(_bars([max(c, 1) for c in counts])))
    safe_table = crosstab(patients, index="postcode_district", columns="sex", policy=policy)
    corpus.safe("analysis.ipynb", "notebook with plot and table", _notebook([
        _markdown("# Age profile\n\nCounts below 10 are suppressed by `enclave.safe` (policy 2026.1).", 1),
        _code("import polars as pl\nfrom enclave.safe import crosstab, histogram\n"
              "cohort = pl.read_parquet('/data/demo/patients.parquet')\nbins = [0, 18, 40, 65, 80, 120]\n",
              metadata={"tags": ["setup"], "execution": {"iopub.execute_input": "2026-01-05T10:00:01.000Z",
                                                          "shell.execute_reply": "2026-01-05T10:00:02.000Z"}}, n=2),
        _code("table = crosstab(cohort, index='postcode_district', columns='sex')\ntable",
              [{"data": {"text/html": safe_table._repr_html_(), "text/plain": repr(safe_table)}, "execution_count": 3,
                "metadata": {}, "output_type": "execute_result"}], n=3),
        _code("fig = plot_histogram(hist)\nfig",
              [_display({"image/png": base64.b64encode(plot).decode(), "text/plain": "<Figure size 640x400 with 1 Axes>"},
                        {"image/png": {"width": 320, "height": 200}}),
               _stream("Saved age_histogram.png (10 bins, 0-100 years)\n")], n=4),
    ]))

    weekly = admissions.with_columns(pl.col("admitted_at").dt.truncate("1w").dt.date().alias("week")).group_by("week").agg(
        pl.len().alias("admissions")).sort("week").filter(pl.col("admissions") >= 10).tail(20)
    corpus.safe("weekly_admissions.csv", "time series", "week_starting,admissions\n" + "".join(f"{w},{n}\n" for w, n in weekly.iter_rows()))
    monthly = admissions.with_columns(pl.col("admitted_at").dt.strftime("%Y-%m").alias("month")).group_by("month").agg(
        pl.len().alias("n")).sort("month").tail(12)
    corpus.safe("monthly_admissions.tsv", "time series", "month\tn\n" + "".join(f"{m}\t{n}\n" for m, n in monthly.iter_rows()))
    diagnoses = data.tables["diagnoses"].join(data.tables["admissions"].select("admission_id", "admitted_at"), on="admission_id")
    by_code = (diagnoses.with_columns(pl.col("admitted_at").dt.year().alias("year"))
               .group_by("icd10_code", "description", "year").agg(pl.len().alias("admissions"))
               .filter(pl.col("admissions") >= 10).sort("icd10_code", "year"))
    corpus.safe("diagnoses_by_year.csv", "long table of counts", by_code.write_csv())
    ethnic = patients.group_by("ethnicity").agg(pl.len().alias("n")).filter(pl.col("n") >= 10).sort("n", descending=True)
    total = ethnic["n"].sum()
    table1 = "| Ethnic group | n (%) |\n|---|---|\n" + "".join(f"| {e} | {n} ({100 * n / total:.1f}%) |\n" for e, n in ethnic.iter_rows())
    corpus.safe("table1.md", "table of n (%)", "# Table 1. Cohort by ethnic group\n\n" + table1 +
                f"\nGroups with fewer than 10 people are not shown. Total shown: {total}.\n")
    corpus.safe("model_results.json", "model summary json", json.dumps({
        "model": "logistic regression", "outcome": "emergency admission", "n": 2884, "dof_residual": 2880,
        "coefficients": {"intercept": -1.204, "age": 0.0213, "sex[M]": 0.118},
        "odds_ratio": {"age": 1.022, "sex[M]": 1.125}, "ci_95": {"age": [1.016, 1.027], "sex[M]": [0.962, 1.316]},
        "p_values": {"age": 0.0001, "sex[M]": 0.14}, "aic": 3712.4, "policy_version": "2026.1"}, indent=1))


METHODS_NOTE = """# Methods

## Data
We used the synthetic demo extract (version seed-11, 3,000 patients) covering admissions from
1 April 2019 to 31 March 2024. Patients were followed from their first admission to death or
31 December 2024, whichever came first. 2019/20 and 2023/24 are financial years.

## Analysis
Length of stay was modelled by ordinary least squares with age and sex as covariates
(residual degrees of freedom 2,881). Each additional year of age was associated with a 0.04
day longer stay (95% CI 0.03 to 0.05; p < 0.001); men stayed 0.21 days longer than women
(95% CI -0.05 to 0.47; p = 0.11). Mortality rates are per 1,000 population with Poisson
95% confidence intervals. About 12.5% of patients had an emergency admission.

| Measure | Value |
|---|---|
| Patients | 3,000 |
| Admissions | 3,402 |
| Median age (years) | 41 |
| Emergency admissions (%) | 55.1 |

All tables were produced with `enclave.safe` under disclosure policy 2026.1: cells with fewer
than 10 people were suppressed, and dominance rules (2, 0.9) and p-percent (0.1) applied.
Software: Python 3.13, polars 1.x, statsmodels 0.14.
"""


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: make_corpus.py OUT_DIR", file=sys.stderr)
        sys.exit(2)
    items = build(Path(sys.argv[1]))
    print(f"{sum(i.expect == 'bad' for i in items)} bad and {sum(i.expect == 'safe' for i in items)} safe files in {sys.argv[1]}")
