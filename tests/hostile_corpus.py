"""A generated corpus of hostile input files, mixed with good images.

`make_corpus(base)` writes `base/data/{a,b}/...` (class folders: good images
plus one hostile file per case), `base/outside/` (what links point to) and
`base/csv/*.csv` (broken CSV sources), and returns a `Corpus` whose `cases`
map each case to its file and what the scan must say (`reason`, None for a
file that is good and must be used, or `"hidden"` for a file never listed).

The `unreadable` case holds for every user, root included (CI runs as
root): a link to itself, which the kernel refuses to resolve (ELOOP, "Too
many levels of symbolic links"), the way a copied dataset's circular links
fail. `chmod 000` (`no_read_permission`) stops only other users: as root the
file is read and used (`Corpus.can_deny_read` says which is expected).

Example:

```python
from hostile_corpus import make_corpus

corpus = make_corpus(tmp_path)
len(corpus.cases)              # 30+
corpus.cases["fifo"].path      # .../data/a/x.png, a named pipe
```
"""

import dataclasses
import os
import socket
import stat
import struct
import zlib

import cv2
import numpy as np

GOOD_PER_CLASS = 12
SIZE = 32


@dataclasses.dataclass
class Case:
    name: str
    path: str
    reason: object  # a scan reason, None (good: used) or "hidden" (never listed)
    note: str = ""


@dataclasses.dataclass
class Corpus:
    root: str
    outside: str
    cases: dict
    csvs: dict
    good: list
    sockets: list
    can_deny_read: bool

    def close(self):
        for sock in self.sockets:
            sock.close()


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
    )


def png_bomb(width=20000, height=20000):
    """A valid gray PNG of `width` x `height` zero pixels in a few hundred KB."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


def _image(seed, channels=1):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (SIZE, SIZE, channels), dtype=np.uint8)
    return image[..., 0] if channels == 1 else image


def _png(image):
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _jpeg(image):
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def _cmyk_jpeg():
    from PIL import Image

    import io

    buffer = io.BytesIO()
    Image.fromarray(_image(5, 3)).convert("CMYK").save(buffer, "JPEG")
    return buffer.getvalue()


def _animated_gif():
    from PIL import Image

    import io

    frames = [Image.fromarray(_image(i)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _dicom(path, pixels=True):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientName = "Hostile^Corpus"
    dataset.Modality = "OT"
    if pixels:
        dataset.Rows = dataset.Columns = SIZE
        dataset.SamplesPerPixel = 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.BitsAllocated = dataset.BitsStored = 8
        dataset.HighBit = 7
        dataset.PixelRepresentation = 0
        dataset.PixelData = _image(9).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def _jpeg_with_size(width, height):
    """A small JPEG whose frame header claims `width` x `height`."""
    data = bytearray(_jpeg(_image(11)))
    offset = 2
    while offset < len(data):
        marker = data[offset + 1]
        length = struct.unpack(">H", data[offset + 2:offset + 4])[0]
        if 0xC0 <= marker <= 0xC2:
            data[offset + 5:offset + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        offset += 2 + length
    raise AssertionError("no SOF marker")


# === The two medical bombs of issue 33 ===
# Both are written as deflate streams of one compressed zero chunk repeated
# (each piece a fresh stream ended by a full flush: valid deflate data), so a
# gigabyte of zeros costs milliseconds to write and about 1 MB on disk.


def _zero_deflate(total, chunk=16_000_000):
    """Raw deflate pieces (not final) of `total` zero bytes."""
    def piece(size):
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(bytes(size)) + compressor.flush(zlib.Z_FULL_FLUSH)

    full, rest = divmod(total, chunk)
    return piece(chunk) * full + (piece(rest) if rest else b"")


def _raw_deflate(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


def nifti_bomb(shape=(6000, 6000, 300), held=1_000_000_000):
    """A ~1 MB `.nii.gz` whose header claims `shape` int16 voxels (21.6 GB for
    the default) and that holds `held` bytes of zeros once inflated."""
    header = bytearray(352)
    header[0:4] = struct.pack("<i", 348)
    header[40:56] = struct.pack("<8h", len(shape), *shape, *([1] * (7 - len(shape))))
    header[70:74] = struct.pack("<hh", 4, 16)  # int16
    header[76:108] = struct.pack("<8f", 1, 1, 1, 1, 1, 1, 1, 1)  # pixdim
    header[108:112] = struct.pack("<f", 352.0)  # vox_offset
    header[112:116] = struct.pack("<f", 1.0)  # scl_slope
    header[252:256] = struct.pack("<hh", 0, 1)  # qform, sform codes
    header[280:292] = struct.pack("<3f", 1, 0, 0)  # srow_x
    header[296:308] = struct.pack("<3f", 0, 1, 0)
    header[312:324] = struct.pack("<3f", 0, 0, 1)
    header[344:348] = b"n+1\x00"
    crc = zlib.crc32(bytes(header))
    zero = bytes(16_000_000)
    left = held - len(header)
    while left:
        step = min(left, len(zero))
        crc = zlib.crc32(zero[:step] if step < len(zero) else zero, crc)
        left -= step
    stream = _raw_deflate(bytes(header)) + _zero_deflate(held - len(header)) + b"\x03\x00"
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return gzip_header + stream + struct.pack("<II", crc & 0xFFFFFFFF, held & 0xFFFFFFFF)


def deflated_dicom_bomb(size=40000):
    """A ~1.5 MB Deflated Explicit VR Little Endian DICOM of `size` x `size`
    8-bit pixels (1.6 GB inflated for the default)."""
    import io

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientName = "Hostile^Bomb"
    dataset.Modality = "OT"
    dataset.Rows = dataset.Columns = size
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    body = io.BytesIO()
    dataset.set_original_encoding(False, True)
    fp = pydicom.filebase.DicomFileLike(body)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, dataset)
    pixels = size * size
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels)
    stream = _raw_deflate(body.getvalue() + element) + _zero_deflate(pixels) + b"\x03\x00"
    return out.getvalue() + stream


def make_corpus(base):
    """Writes the corpus under `base`; returns a `Corpus` (see module docstring)."""
    base = os.fspath(base)
    root = os.path.join(base, "data")
    outside = os.path.join(base, "outside")
    for folder in (os.path.join(root, "a"), os.path.join(root, "b"),
                   os.path.join(outside, "images")):  # outside: next to the root
        os.makedirs(folder, exist_ok=True)
    good = []
    for label in ("a", "b"):
        for i in range(GOOD_PER_CLASS):
            image = _image(100 * (label == "b") + i)
            image[: SIZE // 2] //= 4 if label == "a" else 1  # something to learn
            path = os.path.join(root, label, f"good_{i:02d}.png")
            with open(path, "wb") as handle:
                handle.write(_png(image))
            good.append(path)
    for i in range(3):
        with open(os.path.join(outside, "images", f"secret_{i}.png"), "wb") as handle:
            handle.write(_png(_image(200 + i)))
    secret = os.path.join(outside, "images", "secret_0.png")
    a = os.path.join(root, "a")
    cases = {}

    def add(name, filename, reason, content=None, note=""):
        path = os.path.join(a, filename)
        if content is not None:
            with open(path, "wb") as handle:
                handle.write(content)
        cases[name] = Case(name, path, reason, note)
        return path

    os.symlink(secret, add("link_file_out", "link_out.png", "outside_root"))
    os.symlink(os.path.join(outside, "images"), os.path.join(a, "linked_dir_out"))
    cases["link_dir_out"] = Case("link_dir_out", os.path.join(a, "linked_dir_out"),
                                 "outside_root", "linked folder: not entered")
    os.symlink("/etc/passwd", add("etc_passwd", "passwd.png", "outside_root"))
    os.symlink("/dev/zero", add("dev_zero", "zero_device.png", "outside_root"))
    os.symlink(os.path.join(a, "gone.png"), add("dangling_link", "dangling.png", "missing"))
    os.symlink(a, os.path.join(a, "loop"))  # a folder linking to itself: no endless walk
    cases["link_loop"] = Case("link_loop", os.path.join(a, "loop"), "hidden",
                              "linked folder already walked: not entered again")
    os.symlink(good[0], add("link_inside", "link_inside.png", "duplicate", note="same file as good_00"))
    os.mkfifo(add("fifo", "x.png", "not_regular"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = add("socket", "socket.png", "not_regular")
    try:
        sock.bind(sock_path)
    except OSError:  # path too long for AF_UNIX: a shorter name
        del cases["socket"]
    os.symlink("unreadable.png", add("unreadable", "unreadable.png", "unreadable",
                                     note="a link to itself: ELOOP, also for root"))
    can_deny_read = os.geteuid() != 0
    no_permission = add("no_read_permission", "no_permission.png",
                        "unreadable" if can_deny_read else None, _png(_image(12)),
                        note="chmod 000 (as root: still readable, so used)")
    os.chmod(no_permission, 0)
    add("zero_bytes", "zero.png", "empty", b"")
    add("truncated_png", "truncated.png", "corrupt", _png(_image(13))[:300])
    add("truncated_jpeg", "truncated.jpg", "corrupt", _jpeg(_image(14))[:200])
    add("text_as_png", "notes.png", "not_image", b"patient notes, not an image\n" * 4)
    add("html_as_jpeg", "page.jpg", "not_image",
        b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")
    add("rgba_png", "rgba.png", None, _png(np.dstack([_image(15, 3), _image(16)])))
    add("cmyk_jpeg", "cmyk.jpg", None, _cmyk_jpeg())
    add("png_16_bit", "sixteen.png", None, _png(_image(17).astype("uint16") * 257))
    add("animated_gif", "anim.gif", None, _animated_gif())
    add("jpeg_named_png", "really_a_jpeg.png", None, _jpeg(_image(18)))
    add("corrupt_dicom", "corrupt.dcm", "unreadable_dicom",
        b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 8)
    _dicom(add("dicom_no_pixels", "nopixels.dcm", "unreadable_dicom"), pixels=False)
    _dicom(add("dicom_good", "good.dcm", None))
    add("unicode_name", "\u00e9t\u00e9_\u4e2d\u6587_\u0645\u0631\u062d\u0628\u0627.png", None,
        _png(_image(19)))
    add("hidden_file", ".hidden.png", "hidden", _png(_image(20)))
    add("newline_name", "evil\nb\t0.9999\ttop-2: b:1.000.png", None, _png(_image(21)))
    add("control_chars", "bell\x07\x1b[31mred.png", None, _png(_image(22)))
    add("one_pixel", "tiny.png", "too_small", _png(np.zeros((1, 1), np.uint8)))
    add("thin_image", "thin.png", "too_small", _png(np.zeros((1, 300), np.uint8)))
    add("png_bomb", "bomb.png", "too_large", png_bomb())
    gif_header = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x3b"
    add("gif_bomb_header", "bomb.gif", "too_large", gif_header)
    bmp = bytearray(b"BM" + b"\0" * 52)
    bmp[18:26] = struct.pack("<ii", 50000, 50000)
    add("bmp_bomb_header", "bomb.bmp", "too_large", bytes(bmp))
    add("jpeg_bomb_header", "bomb.jpg", "too_large", _jpeg_with_size(60000, 60000))
    add("nifti_bomb", "bomb.nii.gz", "too_large", nifti_bomb(),
        note="~1 MB .nii.gz claiming 6000x6000x300 int16 (21.6 GB)")
    add("deflated_dicom_bomb", "bomb_deflated.dcm", "too_large", deflated_dicom_bomb(),
        note="~1.5 MB deflated DICOM of 40000x40000 (1.6 GB inflated)")
    os.makedirs(os.path.join(a, "nested", "deeper"))
    add("nested_good", os.path.join("nested", "deeper", "n.png"), None, _png(_image(23)))

    # CSVs live in the data root: their paths are relative to it.
    rel = [os.path.relpath(p, root) for p in good]
    csvs = {}

    def write_csv(name, rows):
        path = os.path.join(root, name)
        with open(path, "w") as handle:
            handle.write("path,label\n" + "".join(f"{p},{l}\n" for p, l in rows))
        csvs[name] = path

    labelled = [(p, "class_" + p.split(os.sep)[0]) for p in rel]
    write_csv("label_typo.csv", labelled + [(os.path.join("a", "rgba.png"), "class_b_typo")])
    write_csv("duplicates.csv", labelled + labelled[:6] + labelled[-6:])
    # The same file under another label (twice for one of them): which is right is unknowable.
    other = {"class_a": "class_b", "class_b": "class_a"}
    conflicts = [(p, other.get(l, "class_a")) for p, l in (labelled[0], labelled[-1])]
    write_csv("label_conflict.csv", labelled + conflicts + [labelled[0]])
    write_csv("escapes.csv", labelled + [("../../../../../../etc/passwd", "class_a"),
                                         ("/etc/passwd", "class_b"),
                                         ("../outside/images/secret_1.png", "class_a")])
    return Corpus(root, outside, cases, csvs, good, [sock], can_deny_read)
