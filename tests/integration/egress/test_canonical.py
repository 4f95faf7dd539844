"""The canonical form of every allowed file type: each place data can hide beside what a viewer
shows is tried, and the canonical bytes must not hold it (or the file cannot be released)."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import struct
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from enclave.config import Settings
from enclave.disclosure.policy import DisclosurePolicy
from enclave.egress.canonical import (
    CanonicalRules,
    NotebookRules,
    canonical_bytes,
    canonicalise_objects,
    kind_of,
    store_bytes,
    with_canonical_findings,
)
from enclave.errors import InvalidInput

ROWS = "".join(f"{9434765000 + i},19{40 + i % 50}-0{1 + i % 9}-1{i % 10},{'MF'[i % 2]},LS{i % 30}\n" for i in range(60))
RULES = CanonicalRules(
    allowed_types=frozenset({"csv", "tsv", "txt", "md", "json", "png", "jpeg", "ipynb"}),
    notebooks=NotebookRules(metadata_allowed=frozenset({"kernelspec", "language_info", "tags"}),
                            mime_types_allowed=frozenset({"text/plain", "text/html", "image/png"})),
)


def _png_chunks(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, read independently of Pillow; asserts nothing follows IEND."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while True:
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        kinds.append(kind)
        pos += 12 + length
        if kind == b"IEND":
            assert pos == len(data), f"{len(data) - pos} bytes after IEND"
            return kinds


def _jpeg_markers(data: bytes) -> list[int]:
    """The markers of a JPEG up to the start of scan; asserts nothing follows the end marker."""
    assert data[:2] == b"\xff\xd8" and data.endswith(b"\xff\xd9")
    pos, markers = 2, []
    while data[pos] == 0xFF and data[pos + 1] != 0xDA:
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        markers.append(marker)
        pos += 2 + length
    return markers


def _picture(mode: str = "RGB") -> Image.Image:
    img = Image.new(mode, (16, 9), "white")
    for x in range(16):
        img.putpixel((x, x % 9), (x * 15, 200 - x * 10, 40) if mode == "RGB" else (x * 15, 9, 40, 128))
    return img


def _png(img: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", **save)
    return out.getvalue()


def _pixels(data: bytes, mode: str = "RGBA") -> list[tuple[int, ...]]:
    img = Image.open(io.BytesIO(data)).convert(mode)
    return [img.getpixel((x, y)) for y in range(img.height) for x in range(img.width)]


# --- PNG -------------------------------------------------------------------------------------

def test_canonical_png_drops_bytes_after_iend_and_text_chunks_and_keeps_every_pixel() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", ROWS)
    info.add_text("Description", ROWS, zip=True)
    info.add_itxt("XML:com.adobe.xmp", ROWS)
    submitted = _png(_picture(), pnginfo=info, dpi=(300, 300), icc_profile=b"\x00" * 200) + ROWS.encode()
    assert ROWS.encode() in submitted
    kind, released = canonical_bytes("fig/plot.png", submitted, RULES)
    assert kind == "png"
    assert _png_chunks(released) == [b"IHDR", b"IDAT", b"IEND"]
    assert b"9434765" not in released and b"Comment" not in released
    assert _pixels(released) == _pixels(_png(_picture()))


def test_canonical_png_palette_becomes_its_colours_so_unused_palette_entries_cannot_carry_data() -> None:
    img = _picture().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette = img.getpalette() or []
    smuggled = list(ROWS.encode()[: 768 - len(palette)])
    img.putpalette(palette + smuggled)
    submitted = _png(img)
    _, released = canonical_bytes("p.png", submitted, RULES)
    assert _png_chunks(released) == [b"IHDR", b"IDAT", b"IEND"]  # no PLTE: the colours are the pixels
    assert _pixels(released) == _pixels(submitted)


def test_canonical_png_transparency_and_sixteen_bits_survive_as_pixels() -> None:
    rgba = _picture("RGBA")
    assert _pixels(canonical_bytes("a.png", _png(rgba), RULES)[1]) == _pixels(_png(rgba))
    deep = Image.new("I;16", (4, 4))
    for i in range(16):
        deep.putpixel((i % 4, i // 4), i * 4000)
    released = canonical_bytes("d.png", _png(deep), RULES)[1]
    again = Image.open(io.BytesIO(released))
    assert [again.getpixel((i % 4, i // 4)) for i in range(16)] == [i * 4000 for i in range(16)]


def test_canonical_png_is_deterministic() -> None:
    submitted = _png(_picture()) + b"tail"
    assert canonical_bytes("a.png", submitted, RULES) == canonical_bytes("b.png", submitted, RULES)


@pytest.mark.parametrize("data, reason", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a decodable PNG"),
    (b"region,count\nnorth,120\n", "not a decodable PNG"),
])
def test_canonical_png_that_cannot_be_decoded_cannot_be_released(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as err:
        canonical_bytes("x.png", data, RULES)
    assert "\n" not in str(err.value)


def test_canonical_png_truncated_or_animated_cannot_be_released() -> None:
    whole = _png(_picture())
    with pytest.raises(InvalidInput, match="not a decodable PNG"):
        canonical_bytes("t.png", whole[: len(whole) // 2], RULES)
    frames = io.BytesIO()
    _picture().save(frames, format="PNG", save_all=True, append_images=[_picture().rotate(180)])
    with pytest.raises(InvalidInput, match="animated PNG with 2 frames"):
        canonical_bytes("anim.png", frames.getvalue(), RULES)


# --- JPEG ------------------------------------------------------------------------------------

def test_canonical_jpeg_drops_comments_exif_and_trailing_bytes() -> None:
    exif = Image.Exif()
    exif[0x010E] = ROWS[:1000]  # ImageDescription
    out = io.BytesIO()
    _picture().save(out, format="JPEG", quality=95, comment=ROWS[:2000].encode(), exif=exif.tobytes(),
                    icc_profile=b"\x00" * 128)
    submitted = out.getvalue() + ROWS.encode()
    kind, released = canonical_bytes("photo.jpeg", submitted, RULES)
    assert kind == "jpeg"
    assert b"9434765" not in released
    markers = _jpeg_markers(released)
    assert 0xFE not in markers  # COM
    assert not [m for m in markers if 0xE1 <= m <= 0xEF]  # APP1..APP15: EXIF, XMP, ICC ...
    diff = [abs(a - b) for p, q in zip(_pixels(released, "RGB"), _pixels(out.getvalue(), "RGB")) for a, b in zip(p, q)]
    assert max(diff) <= 16  # re-encoded from the same pixels (JPEG is lossy)


def test_canonical_jpeg_exif_orientation_is_applied_to_the_pixels() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    out = io.BytesIO()
    _picture().save(out, format="JPEG", exif=exif.tobytes())
    released = canonical_bytes("r.jpg", out.getvalue(), RULES)[1]
    assert Image.open(io.BytesIO(released)).size == (9, 16)


# --- text ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.txt", "t.md", "t.json"])
def test_canonical_text_is_utf8_without_bom_with_newline_line_ends(name: str) -> None:
    body = '["a", "b"]\r\n' if name.endswith(".json") else "région,count\r\nnorth,120\rsouth,85\r\n"
    kind, released = canonical_bytes(name, b"\xef\xbb\xbf" + body.encode(), RULES)
    assert kind == name.split(".")[1]
    assert released == body.replace("\r\n", "\n").replace("\r", "\n").encode()
    assert b"\r" not in released and not released.startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize("name, data, reason", [
    ("t.csv", "région,count\n".encode("latin-1"), "not UTF-8"),
    ("t.txt", b"abc\x00def", "NUL bytes"),
    ("t.json", b'{"a": 1,', "not valid JSON"),
    ("t.xlsx", b"PK\x03\x04", "has no canonical form"),
    ("t", b"plain", "has no canonical form"),
])
def test_canonical_text_that_cannot_be_read_cannot_be_released(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        canonical_bytes(name, data, RULES)


def test_canonical_type_outside_the_policy_cannot_be_released() -> None:
    narrow = CanonicalRules(allowed_types=frozenset({"csv"}), notebooks=RULES.notebooks)
    with pytest.raises(InvalidInput, match="md files may not leave"):
        canonical_bytes("notes.md", b"# hi\n", narrow)


# --- notebooks -------------------------------------------------------------------------------

def _notebook() -> dict:
    smuggled_png = base64.b64encode(_png(_picture()) + ROWS.encode()).decode()
    return {
        "nbformat": 4, "nbformat_minor": 4,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}, "patients": ROWS.splitlines()},
        "cells": [
            {"cell_type": "markdown", "id": "9434765919", "metadata": {"hidden_rows": ROWS, "tags": ["intro"]},
             "source": ["# Results\r\n", "![x](attachment:rows.csv)"],
             "attachments": {"rows.csv": {"text/plain": ROWS}}},
            {"cell_type": "code", "execution_count": 3, "metadata": {"collapsed": True, "jupyter": {"outputs_hidden": True}},
             "source": "df.head()",
             "outputs": [
                 {"output_type": "execute_result", "execution_count": 3, "metadata": {"rows": ROWS},
                  "data": {"text/plain": ["   n\n", "0  120"], "application/vnd.dataresource+json": {"data": ROWS}}},
                 {"output_type": "display_data", "metadata": {}, "data": {"image/png": smuggled_png, "text/plain": "<Figure>"}},
                 {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.custom": ROWS}},
                 {"output_type": "stream", "name": "stdout", "text": "done\r\n"},
             ]},
            {"cell_type": "raw", "metadata": {}, "source": "raw text"},
        ],
        "extra_top_level": ROWS,
    }


def test_canonical_notebook_keeps_cells_sources_and_displayed_outputs_only() -> None:
    submitted = json.dumps(_notebook()).encode()
    assert b"9434765" in submitted
    kind, released = canonical_bytes("analysis.ipynb", submitted, RULES)
    assert kind == "ipynb"
    assert b"9434765" not in released and b"LS1" not in released
    nb = json.loads(released)
    assert set(nb) == {"cells", "metadata", "nbformat", "nbformat_minor"}
    assert nb["metadata"] == {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    md, code, raw = nb["cells"]
    assert md == {"cell_type": "markdown", "id": "cell-1", "metadata": {"tags": ["intro"]},
                  "source": "# Results\n![x](attachment:rows.csv)"}  # no attachments
    assert code["metadata"] == {} and code["execution_count"] == 3 and code["source"] == "df.head()"
    result, figure, stream = code["outputs"]  # the vendor-only output is gone
    assert result == {"output_type": "execute_result", "execution_count": 3, "metadata": {},
                      "data": {"text/plain": "   n\n0  120"}}
    assert set(figure["data"]) == {"image/png", "text/plain"}
    png = base64.b64decode(figure["data"]["image/png"])
    assert _png_chunks(png) == [b"IHDR", b"IDAT", b"IEND"] and _pixels(png) == _pixels(_png(_picture()))
    assert stream == {"output_type": "stream", "name": "stdout", "text": "done\n"}
    assert raw == {"cell_type": "raw", "id": "cell-3", "metadata": {}, "source": "raw text"}


def test_canonical_notebook_is_deterministic_whatever_the_key_order() -> None:
    nb = _notebook()
    reordered = json.loads(json.dumps(nb, sort_keys=True))
    reordered["cells"][1] = dict(reversed(list(reordered["cells"][1].items())))
    first = canonical_bytes("a.ipynb", json.dumps(nb, indent=2).encode(), RULES)[1]
    assert first == canonical_bytes("a.ipynb", json.dumps(reordered).encode(), RULES)[1]
    assert canonical_bytes("a.ipynb", first, RULES)[1] == first  # canonical forms are fixed points


def test_canonical_notebook_saved_as_json_is_treated_as_a_notebook() -> None:
    submitted = json.dumps(_notebook()).encode()
    assert kind_of("results.json", submitted) == "ipynb"
    assert b"9434765" not in canonical_bytes("results.json", submitted, RULES)[1]


@pytest.mark.parametrize("change, reason", [
    (lambda nb: nb.update(nbformat=3), "format 3"),
    (lambda nb: nb["cells"].append({"cell_type": "widget", "source": ""}), "unknown cell type"),
    (lambda nb: nb["cells"][1]["outputs"].append({"output_type": "update_display_data", "data": {}}), "unknown output type"),
    (lambda nb: nb["cells"][1]["outputs"].append(
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": "bm90IGFuIGltYWdl"}}), "not a decodable PNG"),
    (lambda nb: nb["cells"][1]["outputs"].append(
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": "%%%"}}), "not valid base64"),
    (lambda nb: nb["cells"][0].update(source=[1, 2]), "is not text"),
    (lambda nb: nb.update(metadata=[ROWS]), "metadata that is not an object"),
])
def test_canonical_notebook_that_cannot_be_interpreted_cannot_be_released(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    nb = _notebook()
    change(nb)
    with pytest.raises(InvalidInput, match=reason) as err:
        canonical_bytes("a.ipynb", json.dumps(nb).encode(), RULES)
    assert "\n" not in str(err.value)


def test_canonical_rules_are_the_policy_allowlists_the_checker_uses() -> None:
    policy = DisclosurePolicy()
    rules = CanonicalRules.of(policy)
    assert rules.allowed_types == frozenset(policy.checker.allowed_types)
    assert rules.notebooks == NotebookRules(frozenset(policy.notebooks.metadata_allowed),
                                            frozenset(policy.notebooks.mime_types_allowed))


def test_canonical_notebook_with_empty_allowlists_keeps_no_metadata_and_no_output_data() -> None:
    bare = CanonicalRules(allowed_types=RULES.allowed_types, notebooks=NotebookRules(frozenset(), frozenset()))
    nb = json.loads(canonical_bytes("a.ipynb", json.dumps(_notebook()).encode(), bare)[1])
    assert nb["metadata"] == {} and all(c["metadata"] == {} for c in nb["cells"])
    assert [o["output_type"] for o in nb["cells"][1]["outputs"]] == ["stream"]


# --- storing and reporting -------------------------------------------------------------------

def test_canonical_objects_are_stored_read_only_by_digest_and_failures_become_fail_findings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", db_url="sqlite://", policies_dir=tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a").write_bytes(b"\xef\xbb\xbfregion,count\r\nnorth,120\r\n")
    (src / "b").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = canonicalise_objects(settings, DisclosurePolicy(), {"t.csv": src / "a", "fig.png": src / "b"})
    table = out["t.csv"]
    assert table.kind == "csv" and table.problem is None and table.size == len(b"region,count\nnorth,120\n")
    stored = settings.quarantine_dir / "objects" / table.sha256[:2] / table.sha256
    assert stored.read_bytes() == b"region,count\nnorth,120\n"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert out["fig.png"].sha256 is None and "not a decodable PNG" in out["fig.png"].problem
    results = with_canonical_findings({"t.csv": {"status": "pass", "findings": []},
                                       "fig.png": {"status": "review", "findings": []}}, out)
    assert results["t.csv"] == {"status": "pass", "findings": []}
    assert results["fig.png"]["status"] == "fail"
    assert results["fig.png"]["findings"][-1]["rule"] == "canonical_form"
    assert list((settings.quarantine_dir / "tmp").glob("canonical-*")) == []  # nothing half-written


def test_canonical_store_refuses_a_link_where_an_object_should_be(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", db_url="sqlite://", policies_dir=tmp_path)
    data = b"region,count\nnorth,120\n"
    first = store_bytes(settings, data)
    assert store_bytes(settings, data) == first  # idempotent
    os.unlink(first.path)
    (tmp_path / "elsewhere").write_bytes(data)
    os.symlink(tmp_path / "elsewhere", first.path)
    with pytest.raises(InvalidInput, match="not a regular file"):
        store_bytes(settings, data)


def test_canonical_objects_are_among_what_a_backup_keeps(world) -> None:  # type: ignore[no-untyped-def]
    from egress_world import FILES, NOTEBOOK_RELEASED, draft, submit

    from enclave.backup.snapshot import read_references

    rid = draft(world)
    submit(world, rid)
    database = Path(world.settings.db_url.removeprefix("sqlite:///"))
    kept = set(read_references(database).quarantine_objects)
    import hashlib

    assert {hashlib.sha256(b).hexdigest() for b in (*FILES.values(), NOTEBOOK_RELEASED)} <= kept


def test_canonical_objects_of_unreleased_files_are_destroyed_with_the_project(world) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from egress_world import NOTEBOOK_RELEASED, draft, submit
    from sqlalchemy import select

    from enclave.db.models import DataRetention
    from enclave.egress.quarantine import object_path
    from enclave.projects.lifecycle import ProjectAction
    from enclave.projects.retention import housekeeping, move_project
    from enclave.users import get_user

    submit(world, draft(world))
    import hashlib

    canonical = object_path(world.settings, hashlib.sha256(NOTEBOOK_RELEASED).hexdigest())
    assert canonical.exists()
    with world.uow() as s:
        move_project(s, get_user(s, "admin"), world.settings, world.slug, ProjectAction.CLOSE, "study finished")
    housekeeping(world.settings)
    with world.uow() as s:
        due = s.scalars(select(DataRetention)).one().destroy_after
    assert housekeeping(world.settings, now=due + dt.timedelta(seconds=1)).destroyed == [world.slug]
    assert not canonical.exists()
