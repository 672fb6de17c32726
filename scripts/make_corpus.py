"""The bad-input corpus of issue 14: odd, broken and hostile inputs for digitrec, each with the
answer good software gives (the exact HTTP status; 4xx bodies are JSON with "error").

Everything is generated (seeded, deterministic) from Pillow and a few hand-made byte strings;
`cases()` returns them, `python scripts/make_corpus.py DIR` writes the image files to DIR and
prints one line per case. Kinds of case:

- `image`: image bytes, sent as the raw body (`content_type`), read by Recognizer and the CLI;
- `request`: a request to the API (body, content type, method) that only the web answers;
- `raw`: exact bytes written to a socket of a real server (chunked, lengths, methods).
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SEED = 14
SIDE = 64
BOUNDARY = "corpus-boundary-14"
STATUS_ERROR = {400: "ImageDecodeError", 413: "ImageTooLargeError", 415: "ImageDecodeError",
                422: "NoDigitError"}


@dataclass(frozen=True)
class Case:
    """One input and the answer expected for it."""

    name: str
    category: str
    kind: str  # "image", "request" or "raw"
    status: int  # the exact HTTP status expected
    body: bytes = b""
    content_type: str | None = None
    method: str = "POST"
    path: str = "/api/predict"
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes = b""  # kind "raw": the whole request as written to the socket
    suffix: str = ".png"  # kind "image": the file name's suffix for the CLI
    error: str | None = None  # kind "image": the InputError subclass Recognizer raises
    json_body: bool = True  # a 4xx answer carries a JSON body with "error"
    tags: tuple[str, ...] = field(default=())

    @property
    def file_name(self) -> str:
        """The name the case's image has on disk."""
        return f"{self.name}{self.suffix}"


# ---------------------------------------------------------------- images

def digit_grey(side: int = SIDE) -> np.ndarray:
    """A dark '7' on a white ground, uint8 (side, side)."""
    image = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(image)
    w = max(2, side // 10)
    draw.line([(side * 0.25, side * 0.2), (side * 0.75, side * 0.2)], fill=0, width=w)
    draw.line([(side * 0.75, side * 0.2), (side * 0.4, side * 0.85)], fill=0, width=w)
    return np.asarray(image)


def in_mode(grey: np.ndarray, mode: str) -> Image.Image:
    """The grey digit as a Pillow image of `mode` (P+t: palette with a transparent ground)."""
    base = Image.fromarray(grey, "L")
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 257)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255)
    if mode == "LA":
        return Image.merge("LA", (base, Image.new("L", base.size, 255)))
    if mode == "RGBA":  # dark ink, opaque, on a transparent white ground
        return Image.merge("RGBA", (base, base, base, Image.fromarray(255 - grey)))
    if mode == "P+t":
        image = base.convert("P")
        image.info["transparency"] = image.getpixel((0, 0))
        return image
    return base.convert(mode)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    """The image encoded in `fmt`."""
    out = io.BytesIO()
    if image.info.get("transparency") is not None and "transparency" not in params:
        params["transparency"] = image.info["transparency"]
    image.save(out, fmt, **params)
    return out.getvalue()


FORMATS = {  # format: (suffix, content type, modes written)
    "PNG": (".png", "image/png", ["1", "L", "LA", "P", "P+t", "I;16", "RGB", "RGBA"]),
    "JPEG": (".jpg", "image/jpeg", ["1", "L", "RGB", "CMYK", "YCbCr"]),
    "GIF": (".gif", "image/gif", ["1", "L", "P", "P+t", "RGB", "RGBA"]),
    "BMP": (".bmp", "image/bmp", ["1", "L", "P", "RGB", "RGBA"]),
    "TIFF": (".tif", "image/tiff", ["1", "L", "LA", "P", "P+t", "I;16", "I", "F", "RGB", "RGBA",
                                    "CMYK", "YCbCr"]),
    "WEBP": (".webp", "image/webp", ["L", "LA", "RGB", "RGBA"]),
    "PPM": (".pgm", "image/x-portable-anymap", ["1", "L", "I;16", "I", "F", "RGB"]),
    "ICO": (".ico", "image/vnd.microsoft.icon", ["L", "LA", "P", "RGB", "RGBA"]),
    "TGA": (".tga", "image/x-tga", ["L", "LA", "P", "RGB", "RGBA"]),
    "PCX": (".pcx", "image/x-pcx", ["1", "L", "P", "RGB"]),
    "SGI": (".sgi", "image/sgi", ["L", "RGB", "RGBA"]),
    "JPEG2000": (".jp2", "image/jp2", ["L", "LA", "I;16", "RGB", "RGBA"]),
    "QOI": (".qoi", "image/qoi", ["RGB", "RGBA"]),
}


def _image(name: str, category: str, data: bytes, status: int, suffix: str = ".png",
           content_type: str = "image/png", error: str | None = None) -> Case:
    """An image case: the error class follows from the status unless given."""
    return Case(name=name, category=category, kind="image", status=status, body=data,
                content_type=content_type, suffix=suffix,
                error=error or (None if status == 200 else STATUS_ERROR[status]))


def mode_cases() -> list[Case]:
    """Every format Pillow writes, in every odd mode it writes: a digit, so 200."""
    grey = digit_grey()
    out = []
    for fmt, (suffix, ctype, modes) in FORMATS.items():
        for mode in modes:
            params = {"lossless": True} if fmt == "WEBP" else {}
            data = encode(in_mode(grey, mode), fmt, **params)
            tag = mode.replace(";", "").replace("+", "")
            out.append(_image(f"mode-{fmt.lower()}-{tag}", "modes", data, 200, suffix, ctype))
    tiff = in_mode(grey, "L")
    for compression in ("tiff_lzw", "tiff_deflate", "packbits", "tiff_adobe_deflate"):
        out.append(_image(f"mode-tiff-{compression}", "modes",
                          encode(tiff, "TIFF", compression=compression), 200, ".tif",
                          "image/tiff"))
    rgb = in_mode(grey, "RGB")
    out.append(_image("mode-png-interlaced", "modes", encode(rgb, "PNG", interlace=1), 200))
    out.append(_image("mode-jpeg-progressive", "modes",
                      encode(rgb, "JPEG", progressive=True, quality=30), 200, ".jpg",
                      "image/jpeg"))
    out.append(_image("mode-webp-lossy", "modes", encode(rgb, "WEBP", quality=40), 200, ".webp",
                      "image/webp"))
    white_ink = Image.fromarray(255 - grey)  # polarity: white digit on black
    out.append(_image("mode-png-inverted", "modes", encode(white_ink, "PNG"), 200))
    return out


def degenerate_cases() -> list[Case]:
    """Zero-, one-pixel and blank images, extreme strips: 400 (empty) or 422 (no digit)."""
    rng = np.random.default_rng(SEED)
    out = [
        _image("empty-png-0x0", "degenerate", png_with_size(0, 0), 400),
        _image("empty-png-0x5", "degenerate", png_with_size(0, 5), 400),
        _image("gif-screen-0x0-frame-1x1", "degenerate", gif_with_size(0, 0), 422, ".gif",
               "image/gif"),
    ]
    for value in (0, 255):
        for fmt in ("PNG", "GIF", "BMP", "TIFF"):
            suffix, ctype, _ = FORMATS[fmt]
            data = encode(Image.new("L", (1, 1), value), fmt)
            out.append(_image(f"one-pixel-{value}-{fmt.lower()}", "degenerate", data, 422,
                              suffix, ctype))
    for mode, value in (("L", 255), ("L", 0), ("L", 128), ("RGBA", (0, 0, 0, 0)),
                        ("RGBA", (255, 0, 0, 255)), ("LA", (0, 0)), ("I;16", 40000),
                        ("F", 0.5), ("1", 1)):
        fmt = "TIFF" if mode == "F" else "PNG"
        suffix, ctype, _ = FORMATS[fmt]
        data = encode(Image.new(mode, (40, 40), value), fmt)
        tag = f"{mode.replace(';', '')}-{str(value).replace(' ', '')}"
        out.append(_image(f"blank-{tag}", "degenerate", data, 422, suffix, ctype))
    for w, h in ((100_000, 1), (1, 100_000)):
        data = encode(Image.new("L", (w, h), 255), "PNG")
        out.append(_image(f"strip-{w}x{h}-blank", "degenerate", data, 422))
        noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
        out.append(_image(f"strip-{w}x{h}-noise", "degenerate",
                          encode(Image.fromarray(noise), "PNG"), 422))
    wide = [("I;16", "PNG", 1000, 5), ("I;16", "PNG", 3000, 2), ("F", "TIFF", 1000, 3),
            ("I", "TIFF", 2000, 2), ("I;16", "PPM", 1000, 4)]
    for mode, fmt, w, h in wide:  # issue 14 item 1: these were IndexError → 500
        suffix, ctype, _ = FORMATS[fmt]
        grey = np.full((h, w), 255, np.uint8)
        grey[:, w // 3: w // 3 + 3] = 0
        data = encode(in_mode(grey, mode), fmt)
        out.append(_image(f"strip-{mode.replace(';', '')}-{fmt.lower()}-{w}x{h}", "degenerate",
                          data, 422, suffix, ctype))
    edge = np.full((129, 3), 255, np.uint8)  # found by fuzzing: the ink only in the column
    edge[[0, -1], 2] = 0  # that block averaging drops → ValueError (500) before the fix
    out.append(_image("edge-dots-3x129", "degenerate", encode(Image.fromarray(edge), "PNG"),
                      422))
    speck = np.full((200, 200), 255, np.uint8)
    speck[100, 100] = 0
    out.append(_image("speck-only", "degenerate", encode(Image.fromarray(speck), "PNG"), 422))
    return out


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """A PNG chunk with its CRC."""
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_with_size(width: int, height: int, depth: int = 8, colour: int = 0,
                  rows: int = 1) -> bytes:
    """A PNG whose header declares width x height, with `rows` rows of white pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    row = b"\x00" + b"\xff" * max(0, min(width, 1 << 16) * depth // 8)
    idat = zlib.compress(row * rows, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def gif_with_size(width: int, height: int, frame: tuple[int, int] = (1, 1)) -> bytes:
    """A GIF whose logical screen is width x height, holding one small frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 3
    header += b"\xff" * 3
    fw, fh = frame
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, fw, fh, 0)
    data = b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one sub-block, terminator
    return header + descriptor + data + b";"


def tiff_with_size(width: int, height: int) -> bytes:
    """A little-endian TIFF whose IFD declares width x height 8-bit grey, with 8 bytes of data."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, 8)]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1)
        ifd += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + b"\x00" * 4 + b"\xff" * 8


def webp_with_size(width: int, height: int) -> bytes:
    """A small lossless WebP whose VP8L header is patched to declare width x height."""
    data = bytearray(encode(Image.new("RGB", (16, 16), "white"), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 8 + 1  # after the chunk header and the 0x2f signature
    bits = int.from_bytes(data[at:at + 4], "little")
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[at:at + 4] = bits.to_bytes(4, "little")
    return bytes(data)


def bomb_cases() -> list[Case]:
    """Small files that declare far more pixels than the budget: 413 from the header."""
    out = [
        _image("bomb-png-100k-square", "bombs", png_with_size(100_000, 100_000), 413),
        _image("bomb-png-65535x1000", "bombs", png_with_size(65_535, 1_000), 413),
        _image("bomb-png-7000x7000-16bit", "bombs", png_with_size(7_000, 7_000, 16), 413),
        _image("bomb-png-max-ihdr", "bombs", png_with_size(2**31 - 1, 2**31 - 1), 413),
        _image("bomb-gif-65535-square", "bombs", gif_with_size(65_535, 65_535), 413, ".gif",
               "image/gif"),
        _image("bomb-gif-frame-65535", "bombs", gif_with_size(1, 1, (65_535, 65_535)), 413,
               ".gif", "image/gif"),
        _image("bomb-tiff-100k-square", "bombs", tiff_with_size(100_000, 100_000), 413, ".tif",
               "image/tiff"),
        _image("bomb-tiff-10000x5000", "bombs", tiff_with_size(10_000, 5_000), 413, ".tif",
               "image/tiff"),
        _image("bomb-webp-16384-square", "bombs", webp_with_size(16_384, 16_384), 413, ".webp",
               "image/webp"),
        _image("bomb-webp-16384x4000", "bombs", webp_with_size(16_384, 4_000), 413, ".webp",
               "image/webp"),
    ]
    # a real zlib bomb inside the budget: 25 MP of white in a few KB decodes, then has no digit
    out.append(_image("zlib-bomb-5000-square-blank", "bombs",
                      encode(Image.new("L", (5000, 5000), 255), "PNG", optimize=True), 422))
    return out


def truncated_cases() -> list[Case]:
    """Valid files cut at several offsets: 400."""
    rng = random.Random(SEED)
    grey = digit_grey(96)
    out = []
    sources = {
        "png": (encode(in_mode(grey, "L"), "PNG"), ".png", "image/png"),
        "png16": (encode(in_mode(grey, "I;16"), "PNG"), ".png", "image/png"),
        "jpeg": (encode(in_mode(grey, "RGB"), "JPEG"), ".jpg", "image/jpeg"),
        "gif": (encode(in_mode(grey, "L"), "GIF"), ".gif", "image/gif"),
        "bmp": (encode(in_mode(grey, "RGB"), "BMP"), ".bmp", "image/bmp"),
        "tiff": (encode(in_mode(grey, "L"), "TIFF"), ".tif", "image/tiff"),
        "webp": (encode(in_mode(grey, "RGB"), "WEBP", lossless=True), ".webp", "image/webp"),
    }
    for label, (data, suffix, ctype) in sources.items():
        cuts = {1, 4, 16, 40, len(data) // 2, rng.randrange(60, len(data) * 3 // 4)}
        if label in ("png", "png16"):
            cuts.add(len(data) - 30)  # inside the image data
        for cut in sorted(cuts):
            out.append(_image(f"truncated-{label}-at-{cut}", "truncated", data[:cut], 400,
                              suffix, ctype))
    png = bytearray(sources["png"][0])
    png[40] ^= 0xFF  # a flipped byte inside IDAT: bad CRC, bad deflate stream
    out.append(_image("corrupt-png-idat", "truncated", bytes(png), 400))
    out.append(_image("corrupt-png-no-idat", "truncated",
                      sources["png"][0][:33] + _chunk(b"IEND", b""), 400))
    return out


def animated_cases() -> list[Case]:
    """Animated files: the first frame is read."""
    frames = [Image.fromarray(digit_grey()), Image.new("L", (SIDE, SIDE), 255),
              Image.fromarray(255 - digit_grey())]
    out = []
    for fmt, suffix, ctype in (("GIF", ".gif", "image/gif"), ("PNG", ".png", "image/png"),
                               ("WEBP", ".webp", "image/webp"), ("TIFF", ".tif", "image/tiff")):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100,
                      loop=0)
        out.append(_image(f"animated-{fmt.lower()}", "animated", data, 200, suffix, ctype))
        data = encode(frames[1], fmt, save_all=True, append_images=frames[:1], duration=100)
        out.append(_image(f"animated-{fmt.lower()}-blank-first", "animated", data, 422, suffix,
                          ctype))
    return out


def exif_cases() -> list[Case]:
    """JPEG, PNG and WebP with every EXIF orientation, and a broken EXIF block: 200."""
    image = Image.fromarray(digit_grey()).convert("RGB")
    out = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out.append(_image(f"exif-jpeg-orientation-{orientation}", "exif",
                          encode(image, "JPEG", exif=exif), 200, ".jpg", "image/jpeg"))
    for orientation in (3, 6, 9, 0):  # 9 and 0 are out of range: ignored
        exif = Image.Exif()
        exif[0x0112] = orientation
        out.append(_image(f"exif-png-orientation-{orientation}", "exif",
                          encode(image, "PNG", exif=exif), 200))
        out.append(_image(f"exif-webp-orientation-{orientation}", "exif",
                          encode(image, "WEBP", exif=exif), 200, ".webp", "image/webp"))
    out.append(_image("exif-jpeg-garbage-block", "exif",
                      encode(image, "JPEG", exif=b"Exif\x00\x00" + bytes(range(60))), 200,
                      ".jpg", "image/jpeg"))
    return out


def not_image_cases() -> list[Case]:
    """Bytes that are not an image, posted as image/*: 415 when recognisably another kind of
    file, else 400."""
    rng = random.Random(SEED)
    known = {"pdf": b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n<<>>\nendobj\n",
             "zip": b"PK\x03\x04" + bytes(40), "gzip": b"\x1f\x8b\x08\x00" + bytes(20),
             "elf": b"\x7fELF\x02\x01\x01" + bytes(40), "xml": b"<?xml version='1.0'?><a/>",
             "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0L9 9"/></svg>',
             "html": b"<!DOCTYPE html><html><body>7</body></html>",
             "json": b'{"image": "not here"}'}
    out = [_image(f"not-image-{k}", "not-image", v, 415, ".png", "image/png")
           for k, v in known.items()]
    garbage = {"random-1k": bytes(rng.randrange(256) for _ in range(1024)),
               "text": b"seven, handwritten\n" * 20, "zeros": bytes(4096),
               "png-magic-only": b"\x89PNG\r\n\x1a\n", "jpeg-magic-only": b"\xff\xd8\xff",
               "gif-header-only": b"GIF89a", "riff-not-webp": b"RIFF\x10\x00\x00\x00WAVEfmt ",
               "one-byte": b"\x00"}
    out += [_image(f"garbage-{k}", "not-image", v, 400) for k, v in garbage.items()]
    return out


# ---------------------------------------------------------------- requests

def _request(name: str, category: str, status: int, body: bytes = b"",
             content_type: str | None = None, **kw) -> Case:
    return Case(name=name, category=category, kind="request", status=status, body=body,
                content_type=content_type, **kw)


def multipart(parts: list[tuple[str, str | None, str | None, bytes]],
              boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body of (field, filename, content type, data) parts."""
    out = b""
    for name, filename, ctype, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def content_type_cases(png: bytes) -> list[Case]:
    """Raw bodies under the right and wrong declared types."""
    c = "content-type"
    out = [_request("ctype-octet-stream", c, 200, png, "application/octet-stream"),
           _request("ctype-image-jpeg-but-png", c, 200, png, "image/jpeg"),
           _request("ctype-image-with-params", c, 200, png, "image/png; charset=binary"),
           _request("ctype-uppercase", c, 200, png, "IMAGE/PNG"),
           _request("ctype-none", c, 415, png, None),
           _request("ctype-empty", c, 415, png, ""),
           _request("ctype-empty-image-body", c, 400, b"", "image/png")]
    for ctype in ("text/plain", "application/pdf", "application/x-www-form-urlencoded",
                  "video/mp4", "audio/wav", "text/html", "application/xml", "nonsense"):
        out.append(_request(f"ctype-{ctype.replace('/', '-')}", c, 415, png, ctype))
    out.append(_request("ctype-form-urlencoded-field", c, 415, b"image=" + png[:50],
                        "application/x-www-form-urlencoded"))
    return out


def multipart_cases(png: bytes, blank: bytes) -> list[Case]:
    """multipart/form-data edge cases."""
    m, ct = "multipart", f"multipart/form-data; boundary={BOUNDARY}"
    cases = {
        "ok": (200, [("image", "d.png", "image/png", png)]),
        "ok-octet-stream": (200, [("image", "d.png", "application/octet-stream", png)]),
        "ok-no-part-type": (200, [("image", "d.png", None, png)]),
        "ok-unicode-filename": (200, [("image", "ziffer-\u00e4\u20ac.png", "image/png", png)]),
        "ok-traversal-filename": (200, [("image", "../../etc/passwd", "image/png", png)]),
        "ok-extra-fields": (200, [("note", None, None, b"hi"),
                                  ("image", "d.png", "image/png", png)]),
        "two-image-fields": (200, [("image", "a.png", "image/png", png),
                                   ("image", "b.png", "image/png", b"junk")]),
        "missing-image-field": (400, [("file", "d.png", "image/png", png)]),
        "image-as-plain-field": (400, [("image", None, None, b"abc")]),
        "no-parts": (400, []),
        "empty-file": (400, [("image", "d.png", "image/png", b"")]),
        "text-part": (415, [("image", "d.txt", "text/plain", png)]),
        "pdf-part-type": (415, [("image", "d.pdf", "application/pdf", png)]),
        "pdf-bytes": (415, [("image", "d.png", "image/png", b"%PDF-1.7\n" + bytes(64))]),
        "garbage-bytes": (400, [("image", "d.png", "image/png", bytes(range(256)))]),
        "truncated-png": (400, [("image", "d.png", "image/png", png[: len(png) // 2])]),
        "bomb": (413, [("image", "b.png", "image/png", png_with_size(100_000, 100_000))]),
        "blank": (422, [("image", "b.png", "image/png", blank)]),
    }
    out = [_request(f"multipart-{k}", m, s, multipart(p), ct) for k, (s, p) in cases.items()]
    out += [
        _request("multipart-no-boundary", m, 400, multipart(cases["ok"][1]),
                 "multipart/form-data"),
        _request("multipart-wrong-boundary", m, 400, multipart(cases["ok"][1], "other"), ct),
        _request("multipart-unterminated", m, 400,
                 multipart(cases["ok"][1])[: -len(BOUNDARY) - 8], ct),
        _request("multipart-garbage-body", m, 400, b"\x00\xff" * 300, ct),
        _request("multipart-1500-fields", m, 413,
                 multipart([(f"f{k}", None, None, b"x") for k in range(1500)]), ct),
        _request("multipart-over-limit", m, 413,
                 multipart([("image", "big.png", "image/png", png + bytes(5 * 2**20))]), ct),
    ]
    return out


def data_url(data: bytes, ctype: str | None = "image/png", params: str = ";base64") -> str:
    """data:[type][params],base64(data)."""
    return f"data:{ctype or ''}{params},{base64.b64encode(data).decode()}"


def json_cases(png: bytes, blank: bytes) -> list[Case]:
    """JSON bodies: data URLs of every kind, wrong types, bad base64, nesting, huge strings."""
    j, ct = "json", "application/json"
    b64 = base64.b64encode(png).decode()

    def body(value: object) -> bytes:
        return json.dumps(value).encode()

    images = {
        "data-url-png": (200, data_url(png)),
        "data-url-no-type": (200, data_url(png, None)),
        "data-url-octet-stream": (200, data_url(png, "application/octet-stream")),
        "data-url-charset-param": (200, data_url(png, "image/png", ";charset=utf-8;base64")),
        "data-url-uppercase-base64": (200, data_url(png, "image/png", ";BASE64")),
        "data-url-line-breaks": (200, "data:image/png;base64," + "\n".join(
            b64[i:i + 76] for i in range(0, len(b64), 76))),
        "data-url-surrounding-space": (200, "  " + data_url(png) + "\n"),
        "bare-base64": (200, b64),
        "data-url-text-plain": (415, data_url(png, "text/plain")),
        "data-url-svg": (415, data_url(b"<svg/>", "image/svg+xml")),
        "data-url-pdf-as-png": (415, data_url(b"%PDF-1.4 " + bytes(32))),
        "data-url-not-base64": (400, "data:image/png," + "%89PNG"),
        "data-url-empty": (400, "data:image/png;base64,"),
        "data-url-bad-chars": (400, "data:image/png;base64," + b64[:40] + "!!*" + b64[40:]),
        "data-url-bad-padding": (400, "data:image/png;base64," + b64[:-3]),
        "data-url-garbage-image": (400, data_url(bytes(range(200)))),
        "data-url-truncated-png": (400, data_url(png[:60])),
        "data-url-bomb": (413, data_url(png_with_size(100_000, 100_000))),
        "data-url-blank": (422, data_url(blank)),
        "empty-string": (400, ""),
        "not-base64-text": (400, "hello, world"),
        "huge-bad-string": (400, "A" * (3 * 2**20 + 1)),
    }
    out = [_request(f"json-{k}", j, s, body({"image": v}), ct) for k, (s, v) in images.items()]
    wrong = {"image-number": {"image": 7}, "image-null": {"image": None},
             "image-list": {"image": [b64]}, "image-object": {"image": {"data": b64}},
             "image-bool": {"image": True}, "missing-key": {"picture": data_url(png)},
             "empty-object": {}, "top-level-list": [data_url(png)],
             "top-level-string": data_url(png), "top-level-number": 7, "top-level-null": None}
    out += [_request(f"json-{k}", j, 400, body(v), ct) for k, v in wrong.items()]
    out += [
        _request("json-deep-1000", j, 400, b'{"a":' * 1000 + b"1" + b"}" * 1000, ct),
        _request("json-deep-100000-lists", j, 400, b"[" * 100_000 + b"]" * 100_000, ct),
        _request("json-deep-unclosed", j, 400, b"[" * 200_000, ct),
        _request("json-huge-string", j, 413, body({"image": "A" * (5 * 2**20)}), ct),
        _request("json-malformed", j, 400, b'{"image": ', ct),
        _request("json-empty-body", j, 400, b"", ct),
        _request("json-not-utf8", j, 400, b'{"image": "\xff\xfe"}', ct),
        _request("json-nan", j, 400, b'{"image": NaN}', ct),
        _request("json-bom", j, 200, b"\xef\xbb\xbf" + body({"image": data_url(png)}), ct),
        _request("json-plus-json-type", j, 200, body({"image": data_url(png)}),
                 "application/vnd.digit+json"),
        _request("json-duplicate-keys", j, 200,
                 b'{"image": 1, "image": "' + data_url(png).encode() + b'"}', ct),
        _request("json-extra-keys", j, 200, body({"image": data_url(png), "x": [1, {}]}), ct),
    ]
    return out


def http_cases(png: bytes) -> list[Case]:
    """Methods, paths and framing: answered by the app, as JSON where there is a body."""
    h = "http"
    out = [_request(f"method-{m.lower()}", h, 405, png, "image/png", method=m)
           for m in ("GET", "PUT", "DELETE", "PATCH", "FOO", "PROPFIND")]
    out += [
        _request("method-head-predict", h, 405, method="HEAD", json_body=False),
        _request("method-options-predict", h, 200, method="OPTIONS", json_body=False),
        _request("method-head-healthz", h, 200, method="HEAD", path="/healthz",
                 json_body=False),
        _request("method-get-healthz", h, 200, method="GET", path="/healthz"),
        _request("path-unknown-api", h, 404, method="GET", path="/api/nope"),
        _request("path-predict-trailing-slash", h, 404, png, "image/png",
                 path="/api/predict/"),
        _request("path-query-string", h, 200, png, "image/png", path="/api/predict?x=1&x=%zz"),
        _request("read-number-blank", h, 422, encode(Image.new("L", (80, 40), 255), "PNG"),
                 "image/png", path="/api/read-number"),
        _request("read-number-dot-grid", h, 422, dot_grid(40), "image/png",
                 path="/api/read-number"),
        _request("read-number-bomb", h, 413, png_with_size(100_000, 100_000), "image/png",
                 path="/api/read-number"),
        _request("read-number-not-image", h, 415, b"%PDF-1.4 xx", "image/png",
                 path="/api/read-number"),
        _request("over-limit-raw-body", h, 413, png + bytes(6 * 2**20), "image/png"),
    ]
    return out


def dot_grid(n: int) -> bytes:
    """An n x n grid of separate dots (1,600 for n=40): far too many marks for a number."""
    grey = np.full((n * 8, n * 8), 255, np.uint8)
    grey[3::8, 3::8] = 0
    grey[4::8, 4::8] = 0
    grey[3::8, 4::8] = 0
    grey[4::8, 3::8] = 0
    return encode(Image.fromarray(grey), "PNG")


def raw_cases(png: bytes) -> list[Case]:
    """Requests written byte for byte to a real server's socket (which the client then
    half-closes: a request that ends early is answered, not waited for)."""
    r = "raw"

    def head(extra: str, method: str = "POST", path: str = "/api/predict") -> bytes:
        return (f"{method} {path} HTTP/1.1\r\nHost: corpus\r\nConnection: close\r\n{extra}"
                "\r\n").encode()

    def chunked(data: bytes, size: int = 300) -> bytes:
        parts = [data[i:i + size] for i in range(0, len(data), size)]
        return b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts) + b"0\r\n\r\n"

    ctype = "Content-Type: image/png\r\n"
    te = "Transfer-Encoding: chunked\r\n"
    cases = {
        "chunked-ok": (200, head(ctype + te) + chunked(png)),
        "chunked-one-chunk": (200, head(ctype + te) + chunked(png, len(png))),
        "chunked-with-extension": (200, head(ctype + te) + b"%x;ext=1\r\n" % len(png) + png
                                   + b"\r\n0\r\n\r\n"),
        "chunked-bad-size": (400, head(ctype + te) + b"zz\r\n" + png + b"\r\n0\r\n\r\n"),
        "chunked-size-too-long": (400, head(ctype + te) + b"f" * 40 + b"\r\n" + png
                                  + bytes(40_000)),
        "chunked-blank": (422, head(ctype + te) + chunked(
            encode(Image.new("L", (30, 30), 255), "PNG"))),
        "content-length-short": (400, head(ctype + f"Content-Length: {len(png) // 2}\r\n")
                                 + png),
        "content-length-zero": (400, head(ctype + "Content-Length: 0\r\n")),
        "expect-100-continue": (200, head(ctype + f"Content-Length: {len(png)}\r\n"
                                          "Expect: 100-continue\r\n") + png),
        "http-1.0": (200, f"POST /api/predict HTTP/1.0\r\n{ctype}Content-Length: {len(png)}"
                          "\r\n\r\n".encode() + png),
        "unknown-method": (405, head("Content-Length: 0\r\n", method="BREW")),
        "options-star": (200, head("", method="OPTIONS", path="/healthz")),
    }
    out = []
    for k, (status, raw) in cases.items():
        method, path = raw.split(b" ", 2)[:2]
        out.append(Case(name=f"raw-{k}", category=r, kind="raw", status=status, raw=raw,
                        method=method.decode(), path=path.decode(),
                        json_body=k != "options-star"))
    return out


def cases() -> list[Case]:
    """Every case of the corpus, in a fixed order (generated the same way on every run)."""
    png = encode(Image.fromarray(digit_grey()), "PNG")
    blank = encode(Image.new("L", (40, 40), 255), "PNG")
    out = (mode_cases() + degenerate_cases() + bomb_cases() + truncated_cases()
           + animated_cases() + exif_cases() + not_image_cases()
           + content_type_cases(png) + multipart_cases(png, blank) + json_cases(png, blank)
           + http_cases(png) + raw_cases(png))
    names = [c.name for c in out]
    assert len(names) == len(set(names)), "case names must be unique"
    return out


def write_images(directory: Path, selected: list[Case] | None = None) -> list[Path]:
    """Write the image cases' files to `directory`; their paths, in case order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in selected if selected is not None else cases():
        if case.kind == "image":
            path = directory / case.file_name
            path.write_bytes(case.body)
            paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    """`make_corpus.py [DIR]`: list the cases (and write the image files to DIR)."""
    all_cases = cases()
    if argv:
        write_images(Path(argv[0]), all_cases)
    for case in all_cases:
        print(f"{case.category:12} {case.kind:8} {case.status}  {case.name}")
    print(f"{len(all_cases)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
