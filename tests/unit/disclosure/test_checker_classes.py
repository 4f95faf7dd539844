"""The checker by class of attack: each mechanism on its own, and the safe look-alikes it must pass."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from enclave.disclosure import DisclosurePolicy, Verdict, check_file
from enclave.disclosure.checker.dates import on_calendar, parse_date
from enclave.disclosure.checker.registry import CHECKS
from enclave.disclosure.policy import Notebooks

POLICY = DisclosurePolicy()
REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def rules(report) -> dict[str, Verdict]:
    found: dict[str, Verdict] = {}
    for f in report.findings:
        found[f.rule] = max(found.get(f.rule, Verdict.PASS), f.status)
    return found


def png(text_chunk: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 200, 30)).save(buffer, "PNG")
    data = buffer.getvalue()
    if text_chunk is not None:
        chunk = struct.pack(">I", len(text_chunk)) + b"tEXt" + text_chunk + struct.pack(">I", zlib.crc32(b"tEXt" + text_chunk))
        data = data[:33] + chunk + data[33:]
    return data


def test_checker_every_registered_check_is_documented():
    docs = (REPO / "docs" / "disclosure.md").read_text()
    assert CHECKS, "no checks registered"
    for name in CHECKS:
        assert f"`{name}`" in docs, f"check {name!r} is not documented in docs/disclosure.md"


@pytest.mark.parametrize("text, year, month, day", [
    ("1961-03-03", 1961, 3, 3), ("1961/03/03", 1961, 3, 3), ("03/04/1961", 1961, 4, 3), ("19610303", 1961, 3, 3),
    ("3 March 1961", 1961, 3, 3), ("March 3rd, 1961", 1961, 3, 3), ("3rd of March 1961", 1961, 3, 3), ("03-Mar-61", 1961, 3, 3),
])
def test_dates_read_in_any_common_form(text, year, month, day):
    date = parse_date(text)
    assert date is not None and (date.year, date.month, date.day) == (year, month, day)


def test_dates_on_a_calendar_are_periods_not_people():
    assert on_calendar([parse_date(f"2024-{m:02d}-01") for m in range(1, 13)])
    assert on_calendar([parse_date(f"2024-01-{d:02d}") for d in (1, 8, 15, 22, 29)])
    assert not on_calendar([parse_date(d) for d in ("1961-03-03", "1972-11-20", "1984-06-09")])


def test_checker_date_column_under_an_innocuous_header_fails(tmp_path):
    path = write(tmp_path, "t.csv", "Reference date,Group\n1961/03/03,A\n1972/11/20,B\n1984/06/09,A\n1990/01/17,B\n1955/08/30,A\n")
    report = check_file(path, POLICY)
    assert rules(report)["microdata"] is Verdict.FAIL
    assert "1961/03/03" in " ".join(report.findings[0].locations)  # the payload is shown


def test_checker_monthly_and_weekly_series_pass(tmp_path):
    monthly = write(tmp_path, "m.csv", "month,admissions\n" + "".join(f"2024-{m:02d}-01,{100 + m}\n" for m in range(1, 13)))
    weekly = write(tmp_path, "w.md", "| week | n |\n|---|---|\n" + "".join(f"| 2024-01-{d:02d} | {50 + d} |\n" for d in (1, 8, 15, 22, 29)))
    assert check_file(monthly, POLICY).status is Verdict.PASS
    assert check_file(weekly, POLICY).status is Verdict.PASS


@pytest.mark.parametrize("cell", ["3 (1.5%)", "n=4", "4/120", "4 of 120", "2 (0.9)"])
def test_checker_counts_inside_strings_fail(tmp_path, cell):
    path = write(tmp_path, "t.csv", f"Characteristic,Result\nGroup A,{cell}\nGroup B,120 (60.0%)\n")
    assert rules(check_file(path, POLICY))["threshold"] is Verdict.FAIL


@pytest.mark.parametrize("cell", ["120 (60.0%)", "54.2 (12.1)", "0.85 (0.71-1.02)", "41 (33-52)"])
def test_checker_statistics_inside_strings_pass(tmp_path, cell):
    path = write(tmp_path, "t.csv", f"Characteristic,Result\nGroup A,{cell}\nGroup B,{cell}\n")
    assert check_file(path, POLICY).status is Verdict.PASS


def test_checker_small_numbers_in_the_first_column_are_not_labels(tmp_path):
    path = write(tmp_path, "t.csv", "group,area\n3,North\n2,South\n7,East\n")
    assert check_file(path, POLICY).status is not Verdict.PASS
    index = write(tmp_path, "i.csv", ",area,count\n0,North,120\n1,South,85\n2,East,40\n")  # pandas' row numbers
    assert check_file(index, POLICY).status is Verdict.PASS


def test_checker_csv_saved_as_text_is_checked_as_a_table(tmp_path):
    path = write(tmp_path, "notes.txt", "Here is the table.\n\nregion,count\nNorth,120\nSouth,4\nEast,85\n")
    assert rules(check_file(path, POLICY))["threshold"] is Verdict.FAIL


def test_checker_json_columns_and_nested_lists_are_tables(tmp_path):
    columns = write(tmp_path, "c.json", json.dumps({"region": ["North", "South"], "count": [120, 3]}))
    assert rules(check_file(columns, POLICY))["threshold"] is Verdict.FAIL
    nested = write(tmp_path, "n.json", json.dumps({"config": {"layers": [["region", "count"], ["North", 120], ["South", 2]]}}))
    assert rules(check_file(nested, POLICY))["threshold"] is Verdict.FAIL


def test_checker_encoded_payloads_in_any_wrapping_fail(tmp_path):
    raw = bytes(range(256)) * 4
    for name, text in [("wrapped.txt", base64.encodebytes(raw).decode()),
                       ("hex.txt", raw.hex(" ")), ("colons.md", raw.hex(":")), ("a85.txt", base64.a85encode(raw).decode())]:
        report = check_file(write(tmp_path, name, "data:\n" + text), POLICY)
        assert rules(report).get("encoded_blob") is Verdict.FAIL, name


def test_checker_realistic_prose_passes(tmp_path):
    note = ("# Results\n\nBetween 1 April 2019 and 31 March 2024 we followed 3,000 patients (see "
            "https://digital.nhs.uk/data-and-information/publications/statistical/hospital-admitted-patient-care-activity/2023-24). "
            "The odds ratio was 1.23 (95% CI 1.01 to 1.50; p = 0.04); 12.5% were readmitted within 30 days.\n"
            "Dataset checksum sha256 3f5a9c1e0b7d2f4a6c8e0a1b3d5f7e9c2b4d6f8a0c1e3a5b7d9f1e3c5a7b9d1f.\n")
    assert check_file(write(tmp_path, "methods.md", note), POLICY).status is Verdict.PASS


def test_checker_png_text_chunks_fail_and_matplotlib_stamp_passes(tmp_path):
    assert check_file(write(tmp_path, "clean.png", png()), POLICY).status is Verdict.PASS
    stamp = png(b"Software\x00Matplotlib version3.9.2, https://matplotlib.org/")
    assert check_file(write(tmp_path, "mpl.png", stamp), POLICY).status is Verdict.PASS
    payload = png(b"Comment\x00ref,born\nP1,1961-03-03\n")
    report = check_file(write(tmp_path, "bad.png", payload), POLICY)
    assert rules(report) == {"image": Verdict.FAIL} and "1961-03-03" in report.findings[0].message
    trailing = check_file(write(tmp_path, "tail.png", png() + b"hidden rows"), POLICY)
    assert rules(trailing) == {"image": Verdict.FAIL} and "hidden rows" in trailing.findings[0].message


def test_checker_clean_images_follow_the_policy_verdict(tmp_path):
    strict = DisclosurePolicy.model_validate({"images": {"clean": "review"}})
    assert check_file(write(tmp_path, "clean.png", png()), strict).status is Verdict.REVIEW


def test_checker_jpeg_comment_and_exif_fail_plain_jpeg_passes(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, "JPEG")
    plain = buffer.getvalue()
    assert check_file(write(tmp_path, "p.jpg", plain), POLICY).status is Verdict.PASS
    text = b"rows go here"
    comment = plain[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + plain[2:]
    report = check_file(write(tmp_path, "c.jpg", comment), POLICY)
    assert rules(report) == {"image": Verdict.FAIL} and "rows go here" in report.findings[0].message
    exif = Image.Exif()
    exif[0x010E] = "ref,born P1,1961-03-03"
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", exif=exif.tobytes())
    assert rules(check_file(write(tmp_path, "e.jpg", buffer.getvalue()), POLICY)) == {"image": Verdict.FAIL}


def notebook(cells: list[dict], metadata: dict | None = None) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {"kernelspec": {"name": "python3"}}, "cells": cells})


def test_checker_notebook_metadata_beyond_the_allowlist_fails(tmp_path):
    cell = {"cell_type": "code", "source": "x", "metadata": {"tags": ["a"], "stash": "P1,1961-03-03"}, "outputs": [], "execution_count": 1}
    report = check_file(write(tmp_path, "a.ipynb", notebook([cell])), POLICY)
    assert rules(report)["notebook_metadata"] is Verdict.FAIL
    assert "stash" in report.findings[0].message and "1961-03-03" in " ".join(report.findings[0].locations)
    allowing = DisclosurePolicy(notebooks=Notebooks(metadata_allowed=["kernelspec", "tags", "stash"]))
    assert check_file(write(tmp_path, "a.ipynb", notebook([cell])), allowing).status is Verdict.PASS


def test_checker_notebook_unknown_mime_type_fails(tmp_path):
    output = {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.plotly.v1+json": {"data": []}, "text/plain": "fig"}}
    cell = {"cell_type": "code", "source": "fig", "metadata": {}, "outputs": [output], "execution_count": 1}
    report = check_file(write(tmp_path, "p.ipynb", notebook([cell])), POLICY)
    assert rules(report)["notebook_output"] is Verdict.FAIL


def test_checker_notebook_with_plot_and_safe_table_passes(tmp_path):
    image = base64.b64encode(png(b"Software\x00Matplotlib version3.9.2, https://matplotlib.org/")).decode()
    cells = [
        {"cell_type": "markdown", "source": "# Admissions by region", "metadata": {}},
        {"cell_type": "code", "source": "bins = [0, 18, 40, 65, 120]\nfig = plot(table)", "metadata": {"tags": ["plot"]},
         "execution_count": 1, "outputs": [
             {"output_type": "display_data", "metadata": {"image/png": {"width": 20, "height": 10}},
              "data": {"image/png": image, "text/plain": "<Figure size 640x480 with 1 Axes>"}},
             {"output_type": "execute_result", "execution_count": 1, "metadata": {},
              "data": {"text/html": "<table><tr><th>region</th><th>count</th></tr><tr><td>North</td><td>120</td></tr>"
                                    "<tr><td>South</td><td>suppressed</td></tr></table>",
                       "text/plain": "  region  count\n0  North    120\n1  South   <NA>"}}]},
    ]
    report = check_file(write(tmp_path, "ok.ipynb", notebook(cells)), POLICY)
    assert report.status is Verdict.PASS, [f.message for f in report.findings]


def test_checker_svg_is_text_and_a_picture(tmp_path):
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><text x="1" y="1">North 120</text><text x="1" y="9">South 85</text></svg>'
    report = check_file(write(tmp_path, "figure.md", svg), POLICY)
    assert rules(report) == {"image": Verdict.REVIEW}
    bad = svg.replace("South 85", "born 03/04/1961")
    assert rules(check_file(write(tmp_path, "bad.md", bad), POLICY))["direct_identifier"] is Verdict.FAIL


@pytest.mark.parametrize("name, content", [
    ("deep.json", "[" * 5000 + "]" * 5000),
    ("deep.ipynb", json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {"tags": []},
                               "cells": [{"cell_type": "code", "source": "x", "metadata": {}, "outputs": [],
                                          "attachments": json.loads("[" * 900 + "]" * 900)}]})),
])
def test_checker_what_it_cannot_interpret_fails_in_one_line(tmp_path, name, content):
    report = check_file(write(tmp_path, name, content), POLICY)
    assert report.status is Verdict.FAIL
    assert all("\n" not in f.message for f in report.findings)


def test_checker_invisible_characters_and_whitespace_patterns_fail(tmp_path):
    bits = "".join("\u200b" if b == "1" else "\u200c" for b in format(19610303, "b"))
    assert rules(check_file(write(tmp_path, "a.md", f"Results.{bits}\n"), POLICY))["hidden_text"] is Verdict.FAIL
    ends = (" \t", "\t ")
    tabs = "".join(f"line {i}" + ends[i % 2] + "\n" for i in range(16))
    assert rules(check_file(write(tmp_path, "b.md", tabs), POLICY))["hidden_text"] is Verdict.FAIL
    breaks = "First line  \nsecond line  \n" * 10  # markdown line breaks are two spaces
    assert check_file(write(tmp_path, "c.md", breaks), POLICY).status is Verdict.PASS


def test_checker_latex_and_header_tables(tmp_path):
    rows = "".join(f"{a} & {s} & {d} \\\\\n" for a, s, d in [(45, "M", "LS6"), (45, "M", "LS6"), (61, "F", "LS7"), (33, "F", "BD1"), (45, "M", "LS6")])
    latex = write(tmp_path, "t.md", "\\begin{tabular}{lll}\nage & sex & area \\\\\n" + rows + "\\end{tabular}\n")
    assert rules(check_file(latex, POLICY))["microdata"] is Verdict.FAIL
    header = write(tmp_path, "h.csv", "1961-03-03,1972-11-20,1984-06-09,1990-01-17,1955-08-30,1966-02-11\n1,2,3,4,5,6\n")
    assert rules(check_file(header, POLICY))["microdata"] is Verdict.FAIL


def test_checker_key_value_listing_holds_named_counts(tmp_path):
    small = write(tmp_path, "l.md", "| Measure: | Value |\n|---|---|\n| Deaths: | 3 |\n| Patients: | 1200 |\n")
    assert rules(check_file(small, POLICY))["threshold"] is Verdict.FAIL
    summary = write(tmp_path, "s.md", "| Dep. Variable: | y | R-squared: | 0.334 |\n|---|---|---|---|\n"
                                      "| Df Model: | 2 | AIC: | 2477.1 |\n| No. Observations: | 500 | BIC: | 2494.2 |\n")
    assert check_file(summary, POLICY).status is Verdict.PASS


def test_checker_notebook_ids_and_stream_names_are_checked(tmp_path):
    cell = {"cell_type": "code", "id": "1961-03-03-M-LS6", "source": "", "metadata": {}, "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "P0001 1961-03-03", "text": "x"}]}
    report = check_file(write(tmp_path, "n.ipynb", notebook([cell])), POLICY)
    assert rules(report)["notebook_structure"] is Verdict.FAIL
    cell.update(id="d5f3a3b1-7f44-4d5c-9b1e-2b8c1d6f0e8a", outputs=[{"output_type": "stream", "name": "stdout", "text": "done\n"}])
    assert check_file(write(tmp_path, "ok.ipynb", notebook([cell] * 12)), POLICY).status is Verdict.PASS


def test_checker_json_lines_escaped_bytes_and_number_runs(tmp_path):
    people = [{"age": 20 + (7 * i) % 70, "sex": "MF"[i % 2], "area": ["LS6", "LS7", "BD1"][i % 3]} for i in range(30)]
    lines = write(tmp_path, "l.txt", "".join(json.dumps(p) + "\n" for p in people))
    assert rules(check_file(lines, POLICY))["microdata"] is Verdict.FAIL
    raw = bytes((i * 97) % 256 for i in range(300))
    assert rules(check_file(write(tmp_path, "b.txt", "x = " + repr(raw) + "\n"), POLICY))["encoded_blob"] is Verdict.FAIL
    assert rules(check_file(write(tmp_path, "u.txt", "q=" + "".join(f"%{b:02X}" for b in raw) + "\n"), POLICY))["encoded_blob"] is Verdict.FAIL
    codes = write(tmp_path, "c.txt", "codes: " + " ".join(str(b) for b in b"1961-03-03,M,LS6\n1972-11-20,F") + "\n")
    assert check_file(codes, POLICY).status is not Verdict.PASS
    row = write(tmp_path, "r.md", "Admissions per year, 2010 to 2024: " + " ".join(str(100 + 7 * i) for i in range(15)) + "\n")
    assert check_file(row, POLICY).status is Verdict.PASS


def test_checker_prose_with_commas_and_aligned_words_is_not_a_table(tmp_path):
    prose = ("Rates per 1,000 patients, by region, were similar in 2019, 2020 and 2021,\n"
             "and the 3 sites agreed, with 2 exceptions, on 1 definition of readmission,\n"
             "so that 4 analysts could repeat it, as described, in 5 steps, below.\n") * 40
    assert check_file(write(tmp_path, "p.md", prose), POLICY).status is Verdict.PASS
    aligned = "the cohort was followed up\nfrom first admission onwards\nuntil death or study end\n" * 20
    assert check_file(write(tmp_path, "a.md", aligned), POLICY).status is Verdict.PASS


# -- what pixels, escapes, token lists and execution counts carry ------------------------------

import math  # noqa: E402
import urllib.parse  # noqa: E402

import numpy as np  # noqa: E402
from PIL import ImageDraw, ImageFont  # noqa: E402

PEOPLE = [(f"19{40 + (i * 7) % 60:02d}-{1 + i % 12:02d}-{1 + (i * 5) % 28:02d}", "MF"[i % 2], ["LS6", "LS7", "BD1", "LS12"][i % 4])
          for i in range(60)]
PEOPLE_CSV = "dob,sex,district\n" + "".join(f"{d},{s},{a}\n" for d, s, a in PEOPLE)


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _axes(draw: ImageDraw.ImageDraw, width: int, height: int, scale: int = 1) -> None:
    draw.line([(60 * scale, 20 * scale), (60 * scale, height - 40 * scale), (width - 20 * scale, height - 40 * scale)], fill=(0, 0, 0), width=2 * scale)
    font = ImageFont.load_default(size=12 * scale)
    for i in range(6):
        draw.text((10 * scale, height - 40 * scale - i * (height - 60 * scale) // 6 - 6 * scale), f"{i * 20}", fill=(0, 0, 0), font=font)
    draw.text((width // 2 - 40 * scale, height - 30 * scale), "Age band (years)", fill=(0, 0, 0), font=font)


def bar_chart() -> Image.Image:
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    _axes(draw, 640, 480)
    for i, value in enumerate([120, 300, 260, 180, 90]):
        draw.rectangle([80 + i * 110, 440 - value, 160 + i * 110, 440], fill=(31, 119, 180))
    return image


def line_plot() -> Image.Image:
    """Anti-aliased lines and text: drawn four times larger and scaled down."""
    s = 4
    image = Image.new("RGB", (640 * s, 480 * s), "white")
    draw = ImageDraw.Draw(image)
    _axes(draw, 640 * s, 480 * s, s)
    for k, colour in enumerate([(31, 119, 180), (255, 127, 14), (44, 160, 44)]):
        draw.line([(60 * s + x * s, (240 + 120 * math.sin(x / 40 + k) - 30 * k) * s) for x in range(0, 560, 4)], fill=colour, width=2 * s, joint="curve")
    return image.resize((640, 480), Image.LANCZOS)


def histogram() -> Image.Image:
    counts, _ = np.histogram(np.random.default_rng(1).normal(50, 12, 5000), bins=40)
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    _axes(draw, 640, 480)
    for i, count in enumerate(counts):
        draw.rectangle([62 + i * 14, 440 - int(count * 0.9), 75 + i * 14, 440], fill=(31, 119, 180), outline=(0, 0, 0))
    return image


def _colours(values: np.ndarray) -> np.ndarray:
    """A 256-entry colour map (as matplotlib's viridis) applied to values in [0, 1]."""
    lut = np.stack([np.interp(np.linspace(0, 1, 256), [0, .25, .5, .75, 1], c)
                    for c in ([68, 59, 33, 94, 253], [1, 82, 145, 201, 231], [84, 139, 140, 98, 37])], axis=1).astype(np.uint8)
    return lut[np.clip((values * 255).astype(int), 0, 255)]


def heatmap() -> Image.Image:
    m = np.random.default_rng(2).uniform(-1, 1, (12, 12))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 1)
    image = Image.new("RGB", (480, 440), "white")
    image.paste(Image.fromarray(_colours(np.kron((m + 1) / 2, np.ones((30, 30))))), (60, 40))
    _axes(ImageDraw.Draw(image), 480, 440)
    return image


def colour_map() -> Image.Image:
    y, x = np.mgrid[0:360, 0:480]
    z = np.exp(-((x - 240) ** 2 + (y - 180) ** 2) / 8000) + 0.5 * np.sin(x / 50) * np.cos(y / 40)
    return Image.fromarray(_colours((z - z.min()) / (z.max() - z.min()))).resize((600, 450), Image.BILINEAR)


def photo_like() -> Image.Image:
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([120 + 60 * np.sin(x / 90), 100 + 50 * np.cos(y / 70), 140 + 40 * np.sin((x + y) / 120)], axis=2)
    return Image.fromarray(np.clip(base + np.random.default_rng(3).normal(0, 3, base.shape), 0, 255).astype(np.uint8))


SAFE_FIGURES = {
    "bar chart": lambda: encoded(bar_chart()),
    "anti-aliased line plot": lambda: encoded(line_plot()),
    "histogram": lambda: encoded(histogram()),
    "heatmap": lambda: encoded(heatmap()),
    "colour map with gradients": lambda: encoded(colour_map()),
    "palette PNG chart": lambda: encoded(bar_chart().convert("P", palette=Image.ADAPTIVE, colors=64)),
    "JPEG chart": lambda: encoded(line_plot(), "JPEG", quality=75),
    "JPEG heatmap": lambda: encoded(heatmap(), "JPEG", quality=90),
    "JPEG photo-like picture": lambda: encoded(photo_like(), "JPEG", quality=85),
    "RGBA chart": lambda: encoded(histogram().convert("RGBA")),
}


def _bits(payload: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(payload, dtype=np.uint8))


def _in_low_bits(image: np.ndarray, payload: bytes, bit: int = 0) -> np.ndarray:
    flat = image.reshape(-1).copy()
    bits = _bits(payload)
    flat[:len(bits)] = (flat[:len(bits)] & ~np.uint8(1 << bit)) | (bits << bit).astype(np.uint8)
    return flat.reshape(image.shape)


def _flat_plot(mode_channels: int = 3) -> np.ndarray:
    image = np.full((200, 300, mode_channels), 255, dtype=np.uint8)
    image[50:150, 40:260, :3] = (30, 90, 200)[:min(3, mode_channels)]
    return image[:, :, 0] if mode_channels == 1 else image


def _square(payload: bytes, channels: int) -> np.ndarray:
    side = math.ceil(math.sqrt(len(payload) / channels))
    data = payload + b"\0" * (side * side * channels - len(payload))
    shape = (side, side, channels) if channels > 1 else (side, side)
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


PAYLOAD = PEOPLE_CSV.encode()
PIXEL_DISGUISES = {
    # bytes stored as pixel values
    "CSV bytes as RGB pixels": lambda: encoded(Image.fromarray(_square(PAYLOAD, 3))),
    "CSV bytes as grey pixels": lambda: encoded(Image.fromarray(_square(PAYLOAD, 1))),
    "CSV bytes as palette indices": lambda: encoded(Image.fromarray(_square(PAYLOAD, 1)).convert("L").quantize(256)),
    "CSV bytes in one row of pixels": lambda: encoded(Image.fromarray(np.frombuffer(PAYLOAD, dtype=np.uint8).reshape(1, -1))),
    "compressed CSV as pixels of a random palette": lambda: _palette_noise(zlib.compress(PAYLOAD * 4)),
    "CSV bytes in a patch of a chart": lambda: _patch_in_chart(),
    "CSV bytes as a JPEG at quality 100": lambda: encoded(Image.fromarray(_square(PAYLOAD * 4, 3)), "JPEG", quality=100),
    # bits in the low bit planes
    "CSV bits in the lowest bit of a flat plot": lambda: encoded(Image.fromarray(_in_low_bits(_flat_plot(), PAYLOAD))),
    "CSV bits in the second lowest bit": lambda: encoded(Image.fromarray(_in_low_bits(_flat_plot(), PAYLOAD, bit=1))),
    "CSV bits in a grey PNG's lowest bit": lambda: encoded(Image.fromarray(_in_low_bits(_flat_plot(1), PAYLOAD))),
    "CSV bits in the alpha channel": lambda: encoded(Image.fromarray(_in_low_bits(_flat_plot(4), PAYLOAD))),
    "CSV bits in the lowest bit of a rendered chart": lambda: encoded(Image.fromarray(_in_low_bits(np.asarray(bar_chart()), PAYLOAD))),
}


def _palette_noise(payload: bytes) -> bytes:
    image = Image.fromarray(_square(payload, 1), mode="L").convert("P")
    image.putpalette(list(np.random.default_rng(5).integers(0, 256, 768, dtype=np.uint8)))
    return encoded(image)


def _patch_in_chart() -> bytes:
    chart = np.asarray(bar_chart()).copy()
    patch = _square((PAYLOAD * 3)[:40 * 40 * 3], 3)
    chart[100:100 + patch.shape[0], 300:300 + patch.shape[1]] = patch
    return encoded(Image.fromarray(chart))


@pytest.mark.parametrize("name", sorted(PIXEL_DISGUISES))
def test_checker_pixels_that_hold_data_never_pass(tmp_path, name):
    report = check_file(write(tmp_path, "figure.png" if "JPEG" not in name else "figure.jpg", PIXEL_DISGUISES[name]()), POLICY)
    found = rules(report)
    assert found.get("image_pixels", Verdict.PASS) is not Verdict.PASS, (name, report.findings)
    message = " ".join(f.message for f in report.findings if f.rule == "image_pixels")
    if "bit" in name:
        assert found["image_pixels"] is Verdict.FAIL and "hidden in the pixels" in message
    else:
        assert "noise or encoded data" in message and "colours in" in message


@pytest.mark.parametrize("name", sorted(SAFE_FIGURES))
def test_checker_rendered_figures_pass_the_pixel_checks(tmp_path, name):
    report = check_file(write(tmp_path, "figure.png" if "JPEG" not in name else "figure.jpg", SAFE_FIGURES[name]()), POLICY)
    assert report.status is Verdict.PASS, (name, report.findings)


def test_checker_pixel_payload_in_a_notebook_output_fails(tmp_path):
    png_b64 = base64.b64encode(PIXEL_DISGUISES["CSV bits in the lowest bit of a flat plot"]()).decode()
    cell = {"cell_type": "code", "id": "a1", "source": "plot()", "metadata": {}, "execution_count": 1,
            "outputs": [{"output_type": "display_data", "metadata": {}, "data": {"image/png": png_b64, "text/plain": "<Figure>"}}]}
    assert rules(check_file(write(tmp_path, "n.ipynb", notebook([cell])), POLICY))["image_pixels"] is Verdict.FAIL


def test_checker_noise_verdict_follows_the_policy(tmp_path):
    strict = POLICY.model_copy(update={"images": POLICY.images.model_copy(update={"noise": Verdict.FAIL})})
    path = write(tmp_path, "noise.png", PIXEL_DISGUISES["CSV bytes as RGB pixels"]())
    assert rules(check_file(path, POLICY))["image_pixels"] is Verdict.REVIEW
    assert rules(check_file(path, strict))["image_pixels"] is Verdict.FAIL


TOKEN_DISGUISES = {
    "area-year-sex after a line of prose": "Cohort tokens: " + " ".join(f"{a}-{d[:4]}-{s}" for d, s, a in PEOPLE),
    "separated by commas": "Groups: " + ", ".join(f"{a}-{d[:4]}-{s}" for d, s, a in PEOPLE) + ".",
    "one per line": "\n".join(f"{s}/{d.replace('-', '')}/{a}" for d, s, a in PEOPLE) + "\n",
    "colons and semicolons": "; ".join(f"{s}:{d[:4]}:{a}" for d, s, a in PEOPLE),
    "area, sex and age": " ".join(f"{a}_{s}_{20 + (i * 13) % 60}" for i, (_, s, a) in enumerate(PEOPLE)),
    "full dates in tokens, pipes": " | ".join(f"ID{i}.{d}.{a}" for i, (d, _, a) in enumerate(PEOPLE)),
}
TOKEN_SAFE = {
    "prose with years and citations": ("Admissions fell in 2020 (Smith 2021; Jones et al. 2022) and recovered by 2023, as in "
                                       "earlier cohorts (Brown 1998, Lee 2005, Patel 2011, Khan 2016, Ng 2019). ") * 8,
    "an ICD-10 code list in a methods note": ("Diabetes was defined by codes E10, E10.9, E11, E11.0, E11.1, E11.2, E11.3, E11.4, E11.5, "
                                              "E11.6, E11.7, E11.8, E11.9, E13.9, E14.9; hypertension by I10, I11.0, I11.9, I12.0, I13.0, I15.0; "
                                              "COPD by J44.0, J44.1, J44.8, J44.9. Codes were taken from any position in 2015-2023.\n"),
    "p-values and intervals": " ".join(f"OR {1 + i / 20:.2f} (95% CI {1 + i / 40:.2f} to {1 + i / 10:.2f}, p={0.001 * (i + 1):.3f})," for i in range(30)),
    "variable names with years": "Columns: " + ", ".join(f"admissions_{y}, deaths_{y}, rate_{y}" for y in range(2010, 2025)),
    "year ranges": "Periods: " + ", ".join(f"{y}-{y + 1}" for y in range(1990, 2024)),
}


@pytest.mark.parametrize("name", sorted(TOKEN_DISGUISES))
def test_checker_records_written_as_tokens_fail(tmp_path, name):
    report = check_file(write(tmp_path, "t.txt", TOKEN_DISGUISES[name]), POLICY)
    assert rules(report).get("microdata") is Verdict.FAIL, (name, report.findings)


@pytest.mark.parametrize("name", sorted(TOKEN_SAFE))
def test_checker_prose_codes_and_statistics_are_not_records(tmp_path, name):
    report = check_file(write(tmp_path, "t.md", TOKEN_SAFE[name]), POLICY)
    assert report.status is Verdict.PASS, (name, report.findings)


ESCAPE_DISGUISES = {
    "a URL whose query is the CSV": "link: https://example.invalid/?q=" + urllib.parse.quote(PEOPLE_CSV),
    "percent-encoded twice": "see https://example.invalid/r?d=" + urllib.parse.quote(urllib.parse.quote(PEOPLE_CSV)),
    "a query with + for spaces": "https://example.invalid/s?q=" + urllib.parse.quote_plus(PEOPLE_CSV.replace(",", " ")),
    "unicode escapes in a JSON string": json.dumps({"note": "".join("\\u%04x" % ord(c) for c in PEOPLE_CSV)}),
    "hex escapes in a text": "payload = '" + "".join("\\x%02x" % b for b in PAYLOAD) + "'\n",
}
ESCAPE_SAFE = {
    "links with a few escapes": ("Code lists: https://example.invalid/codes?q=type%202%20diabetes&f=icd%2D10 and "
                                 "https://doi.org/10.1000%2F182 (accessed 2024).\n"),
    "a query naming the study": "Data request: https://example.invalid/q?study=heart%20failure%20cohort&years=2019%2D2023&region=north%20east%20england\n",
}


@pytest.mark.parametrize("name", sorted(ESCAPE_DISGUISES))
def test_checker_escaped_text_is_decoded_and_checked(tmp_path, name):
    report = check_file(write(tmp_path, "e.txt", ESCAPE_DISGUISES[name]), POLICY)
    assert rules(report).get("microdata") is Verdict.FAIL, (name, report.findings)
    assert any("(decoded)" in loc for f in report.findings for loc in f.locations)


@pytest.mark.parametrize("name", sorted(ESCAPE_SAFE))
def test_checker_urls_with_a_few_escapes_pass(tmp_path, name):
    report = check_file(write(tmp_path, "e.md", ESCAPE_SAFE[name]), POLICY)
    assert report.status is Verdict.PASS, (name, report.findings)


def _counted(counts: list[int | None]) -> list[dict]:
    return [{"cell_type": "code", "id": f"c{i}", "source": "x", "metadata": {}, "execution_count": n, "outputs": []}
            for i, n in enumerate(counts)]


def test_checker_execution_counts_must_be_run_numbers(tmp_path):
    dobs = [int(d.replace("-", "")) for d, _, _ in PEOPLE]
    years = [int(d[:4]) for d, _, _ in PEOPLE]
    report = check_file(write(tmp_path, "dob.ipynb", notebook(_counted(dobs))), POLICY)
    assert rules(report)["notebook_structure"] is Verdict.FAIL and "19400101"[:4] in " ".join(report.findings[0].locations)
    assert rules(check_file(write(tmp_path, "years.ipynb", notebook(_counted(years))), POLICY))["notebook_structure"] is Verdict.FAIL
    big = _counted([4000, 4001])  # two cells cannot have been run four thousand times
    assert rules(check_file(write(tmp_path, "big.ipynb", notebook(big)), POLICY))["notebook_structure"] is Verdict.FAIL
    shifted = _counted([1])
    shifted[0]["outputs"] = [{"output_type": "execute_result", "execution_count": 19610304, "metadata": {}, "data": {"text/plain": "2"}}]
    assert rules(check_file(write(tmp_path, "out.ipynb", notebook(shifted)), POLICY))["notebook_structure"] is Verdict.FAIL


def test_checker_real_run_orders_pass(tmp_path):
    in_order = _counted(list(range(1, 41)))
    rerun = _counted([3, 4, 5, 9, 7, 8, 12, 13, 14, 15, 16, None, 20, 21, 22, 230, 231, 232])  # some cells re-run, one never run
    assert check_file(write(tmp_path, "a.ipynb", notebook(in_order)), POLICY).status is Verdict.PASS
    assert check_file(write(tmp_path, "b.ipynb", notebook(rerun)), POLICY).status is Verdict.PASS


def test_checker_image_too_large_to_judge_goes_to_review(tmp_path):
    small = POLICY.model_copy(update={"images": POLICY.images.model_copy(update={"max_judged_pixels": 10_000})})
    report = check_file(write(tmp_path, "big.png", SAFE_FIGURES["bar chart"]()), small)
    assert rules(report)["image_pixels"] is Verdict.REVIEW and "640x480" in report.findings[0].message
