"""Images: pixel data and nothing else.

A PNG is walked chunk by chunk (lengths and CRCs checked); only the chunks that say how to
draw the pixels may appear (``images.png_chunks_allowed``), the compressed pixel stream must
decompress to exactly the size its header declares, and nothing may follow ``IEND``. A JPEG
is walked segment by segment: quantisation and Huffman tables, frame and scan headers and
the scan data; comments (COM), application segments (APP1-APP15: EXIF, XMP, ICC ...), a
JFIF thumbnail and anything after ``EOI`` fail. Every finding quotes what was found.

The release re-encodes images from their pixels, so the pixels themselves are judged too
(``image_pixels``): pixel values that look like stored bytes (most pixels changing sharply
from every neighbour) go to a reviewer, and a PNG whose low bit planes flip back and forth
where the picture is flat fails as hiding data.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zlib

import numpy as np
from PIL import Image

from enclave.disclosure.checker.registry import Part, PartKind, check
from enclave.disclosure.findings import Finding, excerpt
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
# JPEG markers that carry only how to decode the pixels.
_JPEG_ALLOWED = {0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
                 0xDB, 0xDD, 0xDA}


class _Bad(Exception):
    """The image holds something besides pixels, or cannot be read; the message says what."""


def _show(data: bytes) -> str:
    """Bytes as a reviewer can read them: the text in them when there is some, else hex."""
    head = data[:4096].decode("latin-1")
    runs = re.findall(r"[\x20-\x7e\t\r\n]{4,}", head)
    shown = sum(map(len, runs))
    if shown >= 16 or (runs and shown >= 0.5 * len(head)):
        return excerpt(" ".join(runs), 100)
    return data[:40].hex(" ")


def _png_text(kind: str, data: bytes) -> bytes:
    """The readable content of a text chunk (decompressed when compressed)."""
    try:
        if kind == "zTXt":
            keyword, _, rest = data.partition(b"\x00")
            return keyword + b": " + zlib.decompressobj().decompress(rest[1:], 4096)
        if kind == "iTXt":
            keyword, _, rest = data.partition(b"\x00")
            compressed, body = rest[:1] == b"\x01", rest[2:]
            body = body.split(b"\x00", 2)[-1]
            return keyword + b": " + (zlib.decompressobj().decompress(body, 4096) if compressed else body)
    except zlib.error:
        pass
    return data


def check_png(data: bytes, policy: DisclosurePolicy) -> list[str]:
    """What a PNG holds besides its pixels, one line each (empty: pixels only)."""
    if not data.startswith(PNG_SIGNATURE):
        raise _Bad("not a PNG file (bad signature)")
    allowed = set(policy.images.png_chunks_allowed)
    problems: list[str] = []
    pos, header, idat, ended = len(PNG_SIGNATURE), None, [], False
    while pos < len(data):
        if pos + 12 > len(data):
            raise _Bad(f"truncated chunk at byte {pos}")
        length, kind_bytes = struct.unpack(">I4s", data[pos:pos + 8])
        kind = kind_bytes.decode("latin-1")
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise _Bad(f"chunk {kind!r} at byte {pos} runs past the end of the file")
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind_bytes + body) != crc:
            problems.append(f"chunk {kind!r} at byte {pos} has a wrong checksum (edited by hand?): {_show(body)}")
        if kind == "IHDR":
            header = struct.unpack(">IIBBBBB", body[:13]) if length == 13 else None
        elif kind == "IDAT":
            idat.append(body)
        if kind == "tEXt" and any(re.fullmatch(p, body.replace(b"\x00", b": ", 1).decode("latin-1")) for p in policy.images.png_text_allowed):
            pass  # a plotting library's own name and version
        elif kind not in allowed:
            shown = _png_text(kind, body) if kind in ("tEXt", "zTXt", "iTXt") else body
            problems.append(f"{kind} chunk ({length} bytes) at byte {pos}: {_show(shown)}")
        pos += 12 + length
        if kind == "IEND":
            ended = True
            break
    if not ended:
        raise _Bad("no IEND chunk: the file is cut short or not a PNG")
    if pos < len(data):
        problems.append(f"{len(data) - pos} bytes after the IEND chunk: {_show(data[pos:])}")
    if header is None:
        raise _Bad("no valid IHDR chunk")
    problems += _png_pixels(header, b"".join(idat))
    return problems


def _png_pixels(header: tuple[int, ...], stream: bytes) -> list[str]:
    width, height, depth, colour, _, _, interlace = header
    channels = _CHANNELS.get(colour)
    if channels is None or width == 0 or height == 0 or width * height > 1 << 28:
        raise _Bad(f"an image header that cannot be read ({width}x{height}, colour type {colour})")
    bits = channels * depth
    if interlace:
        passes = [(math.ceil((width - x) / dx), math.ceil((height - y) / dy)) for x, y, dx, dy in _ADAM7]
        expected = sum(h * (1 + math.ceil(w * bits / 8)) for w, h in passes if w and h)
    else:
        expected = height * (1 + math.ceil(width * bits / 8))
    inflater = zlib.decompressobj()
    try:
        pixels = inflater.decompress(stream, expected + 1)
    except zlib.error as exc:
        raise _Bad(f"pixel data cannot be decompressed ({exc})") from None
    problems = []
    if len(pixels) > expected or inflater.unconsumed_tail:
        problems.append(f"the pixel data decompresses to more than the {expected} bytes a {width}x{height} image needs: {_show(pixels[expected:])}")
    elif len(pixels) < expected or not inflater.eof:
        raise _Bad(f"the pixel data is cut short ({len(pixels)} of {expected} bytes)")
    if inflater.unused_data:
        problems.append(f"{len(inflater.unused_data)} bytes after the compressed pixel data: {_show(inflater.unused_data)}")
    return problems


def check_jpeg(data: bytes, policy: DisclosurePolicy) -> list[str]:
    """What a JPEG holds besides its pixels, one line each (empty: pixels only)."""
    if not data.startswith(b"\xff\xd8"):
        raise _Bad("not a JPEG file (no start-of-image marker)")
    problems: list[str] = []
    pos = 2
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            raise _Bad(f"expected a JPEG marker at byte {pos}; the file is cut short or damaged")
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos >= len(data):
            raise _Bad("the file ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if pos + 2 > len(data):
            raise _Bad("the file ends inside a segment")
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        body = data[pos + 2:pos + length]
        if length < 2 or len(body) != length - 2:
            raise _Bad(f"segment 0x{marker:02X} at byte {pos - 2} runs past the end of the file")
        if marker == 0xE0 and body.startswith(b"JFIF\x00") and length == 16 and body[12:14] == b"\x00\x00":
            pass  # the plain JFIF header: version, density, no thumbnail
        elif marker not in _JPEG_ALLOWED:
            name = {0xFE: "COM (comment)", 0xE1: "APP1 (EXIF/XMP)", 0xE2: "APP2 (ICC/FlashPix)", 0xE0: "APP0 (JFIF extension or thumbnail)",
                    0xED: "APP13 (IPTC)", 0xEE: "APP14 (Adobe)"}.get(marker, f"0x{marker:02X}")
            problems.append(f"{name} segment ({length - 2} bytes) at byte {pos - 2}: {_show(body)}")
        pos += length
        if marker == 0xDA:  # scan data runs to the next marker that is not a stuffed byte or a restart
            while True:
                nxt = data.find(b"\xff", pos)
                if nxt < 0 or nxt + 1 >= len(data):
                    raise _Bad("the scan data has no end; the file is cut short")
                follower = data[nxt + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7 or follower == 0xFF:
                    pos = nxt + (1 if follower == 0xFF else 2)
                    continue
                pos = nxt
                break
    if pos < len(data):
        problems.append(f"{len(data) - pos} bytes after the end-of-image marker: {_show(data[pos:])}")
    return problems


# Pixels differing by more than this (in any channel) from a neighbour are a sharp change.
_SHARP = 10
# Square windows (side, step) in which the pixel measures are taken, besides the whole image.
_WINDOW, _STEP = 32, 4
# Low bits are read in bands of rows (data is written row by row), each of this height and width.
_BAND = (8, 32)
# Windows must hold this many measured pixels (or triples) to be judged.
_MIN_MEASURED = 256


class _TooLarge(Exception):
    """More pixels than the checker judges."""


def _pixels(data: bytes, policy: DisclosurePolicy) -> np.ndarray:
    """The decoded pixels as an (height, width, channels) uint8 array; an image of more than
    ``images.max_judged_pixels`` is not decoded (``_TooLarge``)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > policy.images.max_judged_pixels:
            raise _TooLarge(f"{width}x{height} pixels")
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA")
        array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _windows(hits: np.ndarray, counted: np.ndarray, per_pixel: float = 0.0,
             side: tuple[int, int] = (_WINDOW, _WINDOW)) -> tuple[float, tuple[int, int]]:
    """The largest share hits/counted over the whole array and every window (with its corner);
    a window counts only when it holds ``per_pixel`` counted items per pixel or more."""
    best = (hits.sum() / counted.sum() if counted.sum() >= _MIN_MEASURED else 0.0, (0, 0))
    h, w = hits.shape
    side_h, side_w = min(h, side[0]), min(w, side[1])
    if side_h * side_w < _MIN_MEASURED:  # a thin image: windows of the same area along it
        side_h, side_w = min(h, max(side_h, _MIN_MEASURED * 4 // max(side_w, 1))), min(w, max(side_w, _MIN_MEASURED * 4 // max(side_h, 1)))
    # windows start every _STEP pixels: sum _STEP x _STEP cells first when the windows are
    # made of whole cells, so that the running sums run over a sixteenth of the pixels
    f = _STEP if side_h % _STEP == 0 and side_w % _STEP == 0 else 1
    rows, cols = h // f, w // f
    cells_h = hits[:rows * f, :cols * f].reshape(rows, f, cols, f).sum(axis=(1, 3), dtype=np.int64) if f > 1 else hits.astype(np.int64)
    cells_c = counted[:rows * f, :cols * f].reshape(rows, f, cols, f).sum(axis=(1, 3), dtype=np.int64) if f > 1 else counted.astype(np.int64)
    ch = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    cc = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    ch[1:, 1:] = cells_h.cumsum(0).cumsum(1)
    cc[1:, 1:] = cells_c.cumsum(0).cumsum(1)
    step, wh, ww = (1, side_h // f, side_w // f) if f > 1 else (_STEP, side_h, side_w)
    ys = np.arange(0, rows - wh + 1, step) if rows > wh else np.array([0])
    xs = np.arange(0, cols - ww + 1, step) if cols > ww else np.array([0])
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    y1, x1 = np.minimum(y0 + wh, rows), np.minimum(x0 + ww, cols)
    box_h = ch[y1, x1] - ch[y0, x1] - ch[y1, x0] + ch[y0, x0]
    box_c = cc[y1, x1] - cc[y0, x1] - cc[y1, x0] + cc[y0, x0]
    y0, x0 = y0 * f, x0 * f
    minimum = max(_MIN_MEASURED, per_pixel * side_h * side_w)
    share = np.where(box_c >= minimum, box_h / np.maximum(box_c, 1), 0.0)
    k = np.unravel_index(int(share.argmax()), share.shape)
    if share[k] > best[0]:
        best = (float(share[k]), (int(y0[k]), int(x0[k])))
    return best


def _roughness(px: np.ndarray) -> tuple[float, float, tuple[int, int]]:
    """Share of pixels changing sharply from both their left and upper neighbours (noise):
    over the whole image, and the largest in a window (with its corner)."""
    h, w, _ = px.shape

    def sharp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        diff = np.maximum(a, b) - np.minimum(a, b)
        out = diff[:, :, 0] > _SHARP
        for channel in range(1, diff.shape[2]):
            out |= diff[:, :, channel] > _SHARP
        return out

    dx = sharp(px[:, 1:], px[:, :-1]) if w > 1 else None
    dy = sharp(px[1:], px[:-1]) if h > 1 else None
    if dx is not None and dy is not None:
        rough = dx[1:, :] & dy[:, 1:]
    else:
        rough = dx if dx is not None else dy
    if rough is None or rough.size < _MIN_MEASURED // 4:
        return 0.0, 0.0, (0, 0)
    share, corner = _windows(rough, np.ones_like(rough, dtype=bool))
    return float(rough.mean()), share, corner


def _channels(flags: np.ndarray) -> np.ndarray:
    """How many channels are flagged, per pixel."""
    total = flags[:, :, 0].astype(np.int32)
    for channel in range(1, flags.shape[2]):
        total += flags[:, :, channel]
    return total


def _low_bit_flips(px: np.ndarray) -> tuple[float, int, tuple[int, int]]:
    """Among runs of five neighbouring pixel values whose upper bits agree, the share whose
    middle three low bits flip and flip back (the largest over 1 and 2 low bits, rows and
    columns). Five in a row level, so that the ringing beside an edge (255 253 255 | 68) is
    not taken for flipping bits."""
    best = (0.0, 0, (0, 0))
    for bits in (1, 2):
        upper, low = px >> bits, px & ((1 << bits) - 1)
        for axis in (1, 0):
            n = px.shape[axis]
            if n < 5:
                continue

            def cut(array: np.ndarray, start: int, stop: int) -> np.ndarray:
                index = [slice(None)] * array.ndim
                index[axis] = slice(start, stop)
                return array[tuple(index)]

            same = cut(upper, 1, n) == cut(upper, 0, n - 1)  # value i+1 level with value i
            level = cut(same, 0, n - 4) & cut(same, 1, n - 3) & cut(same, 2, n - 2) & cut(same, 3, n - 1)
            a, b, c = cut(low, 1, n - 3), cut(low, 2, n - 2), cut(low, 3, n - 1)
            flips = level & (a != b) & (a == c)
            # judged where the picture is mostly flat: most runs of every channel level
            share, corner = _windows(_channels(flips), _channels(level), 0.6 * px.shape[2], _BAND)
            if share > best[0]:
                best = (share, bits, corner)
    return best


def judge_pixels(data: bytes, policy: DisclosurePolicy) -> tuple[list[str], list[str]]:
    """(signs of hidden data in the low bits, signs of encoded data as pixel values), one line each."""
    px = _pixels(data, policy)
    hidden: list[str] = []
    noise: list[str] = []
    # A JPEG's low bits are its compression's noise, which no one can set bit by bit: read the PNG's only.
    share, bits, (y, x) = _low_bit_flips(px) if data.startswith(PNG_SIGNATURE) else (0.0, 0, (0, 0))
    if share > policy.images.max_low_bit_flips:
        hidden.append(f"the lowest {bits} bit(s) of the pixels flip back and forth where the picture is flat "
                      f"({share:.0%} of level runs near pixel x={x}, y={y}; a rendered figure has almost none): data hidden in the pixels")
    whole, rough, (y, x) = _roughness(px)
    if whole > policy.images.max_rough_image and whole * 2 > rough:
        rough, x, y = whole, 0, 0
    if rough > policy.images.max_rough_share or whole > policy.images.max_rough_image:
        where = "of the picture" if (x, y) == (0, 0) and rough == whole else f"near x={x}, y={y}"
        noise.append(f"{rough:.0%} of the pixels {where} change sharply from every neighbour, as stored bytes do and "
                     f"a chart does not ({len(np.unique(px.reshape(-1, px.shape[2]), axis=0))} colours in {px.shape[0] * px.shape[1]} pixels)")
    return hidden, noise


@check("image_pixels", PartKind.IMAGE, "pixels that hold data: noise-like pixel values, bits hidden in the low bit planes")
def image_pixels(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    try:
        hidden, noise = judge_pixels(part.data, policy)
    except _TooLarge as exc:
        return [Finding("image_pixels", Verdict.REVIEW,
                        f"{part.where}: {exc}, more than the {policy.images.max_judged_pixels} whose pixels the checker judges; "
                        f"a reviewer must look at it (or export it smaller)", locations=[part.where])]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return [Finding("image", Verdict.FAIL, f"{part.where}: the pixels cannot be decoded ({type(exc).__name__}); export the figure again",
                        locations=[part.where])]
    findings = []
    if hidden:
        findings.append(Finding("image_pixels", Verdict.FAIL, f"{part.where}: {hidden[0]}; export the figure again from the plotting code",
                                locations=[f"{part.where}: {h}" for h in hidden]))
    if noise and policy.images.noise is not Verdict.PASS:
        findings.append(Finding("image_pixels", policy.images.noise,
                                f"{part.where}: the picture looks like noise or encoded data, not a figure: {noise[0]}; a reviewer must see what it shows",
                                locations=[f"{part.where}: {n}" for n in noise]))
    return findings


@check("image_content", PartKind.IMAGE, "anything in a PNG or JPEG besides its pixels (metadata, comments, trailing bytes)")
def image_content(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    reader = check_png if part.origin == "png" else check_jpeg
    try:
        problems = reader(part.data, policy)
    except _Bad as exc:
        return [Finding("image", Verdict.FAIL, f"{part.where}: {exc}; export the figure again as PNG or JPEG", locations=[part.where])]
    except (struct.error, ValueError, IndexError) as exc:
        return [Finding("image", Verdict.FAIL, f"{part.where}: the image cannot be read ({type(exc).__name__}); export it again",
                        locations=[part.where])]
    if problems:
        return [Finding("image", Verdict.FAIL,
                        f"{part.where}: the image holds {len(problems)} thing(s) besides its pixels; export it again without metadata: {problems[0]}",
                        locations=[f"{part.where}: {p}" for p in problems[:20]])]
    if policy.images.clean is Verdict.PASS:
        return []
    return [Finding("image", policy.images.clean, f"{part.where}: an image; policy {policy.version} sends every image to a reviewer",
                    locations=[part.where])]
