"""The two medical decompression bombs of issue 33, in every command and reader.

- a ~1 MB `.nii.gz` whose header claims 6000 x 6000 x 300 int16 voxels (it
  once made `scan` peak at 22.8 GB);
- a ~1.5 MB Deflated Explicit VR Little Endian DICOM of 40000 x 40000 pixels
  (once 3.9 GB before its `too_large`).

Both are generated here (`hostile_corpus.nifti_bomb`, `deflated_dicom_bomb`).
Each command runs in a child of a small wrapper process, which reports the
child's peak memory (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`: the
wrapper has no other child) and wall time; each must say `too_large` for
both files, under 1 GiB. The readers themselves must refuse each bomb in
seconds, with a peak of a few MB over the process's own.
"""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hostile_corpus import deflated_dicom_bomb, nifti_bomb  # noqa: E402

GIB = 2 ** 30

# Runs argv[2:] as a child; prints {"rc", "out", "err", "peak", "seconds"}.
_MEASURE = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr,
                  "peak": peak, "seconds": seconds}))
"""


def _env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    return env


def measure(*command, timeout=300):
    """Runs `command` as the only child of a wrapper: its exit code, output,
    peak memory (bytes) and wall time."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(timeout), *map(str, command)],
                          capture_output=True, text=True, timeout=timeout + 60, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    (root / "data" / "a").mkdir(parents=True)
    (root / "data" / "b").mkdir()
    nifti = root / "data" / "a" / "bomb.nii.gz"
    nifti.write_bytes(nifti_bomb())
    dicom = root / "data" / "b" / "bomb_deflated.dcm"
    dicom.write_bytes(deflated_dicom_bomb())
    return {"root": root, "nifti": nifti, "dicom": dicom}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    import medivision_tf

    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(32, 32, 1), lstm_units=4,
        attention_units=4, class_names=["a", "b"])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def test_the_bombs_are_small_on_disk_and_claim_gigabytes(bombs):
    from medivision_tf.data.io.dicom_budget import read_dicom_header
    from medivision_tf.data.io.memory_budget import nifti_header_info

    assert os.path.getsize(bombs["nifti"]) < 1.5e6 and os.path.getsize(bombs["dicom"]) < 2e6
    assert nifti_header_info(bombs["nifti"].read_bytes())[:2] == ((6000, 6000, 300), "int16")
    header = read_dicom_header(str(bombs["dicom"]))
    assert (header.Rows, header.Columns) == (40000, 40000)
    assert header.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"


_READERS = r"""
import json, sys, time
def rss(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
from medivision_tf.data.checks.scan import check_file
from medivision_tf.data.io.dicom import dicom_frame_count, read_dicom
from medivision_tf.data.io.headers import header_size
from medivision_tf.data.io.memory_budget import TooLargeError
from medivision_tf.data.io.nifti import nifti_slices, read_nifti
from medivision_tf.data.io.python_decode import python_decode
from medivision_tf.data.sources.volumes import expand_paths
nifti, dicom = sys.argv[1], sys.argv[2]
base = rss('VmRSS')
calls = {
    'check_file(nifti)': lambda: check_file(nifti),
    'check_file(dicom)': lambda: check_file(dicom),
    'read_nifti': lambda: read_nifti(nifti),
    'nifti_slices': lambda: nifti_slices(nifti),
    'python_decode(nifti)': lambda: python_decode(open(nifti, 'rb').read(), 'nifti'),
    'read_dicom(path)': lambda: read_dicom(dicom),
    'read_dicom(bytes)': lambda: read_dicom(open(dicom, 'rb').read()),
    'python_decode(dicom)': lambda: python_decode(open(dicom, 'rb').read(), 'dicom'),
    'header_size(dicom)': lambda: header_size(dicom, 'dicom'),
    'dicom_frame_count': lambda: dicom_frame_count(dicom),
    'expand_paths': lambda: expand_paths([nifti, dicom], frames='all'),
}
out = {}
for name, call in calls.items():
    start = time.perf_counter()
    try:
        result = call()
    except TooLargeError as error:
        result = 'TooLargeError'
    except ValueError as error:  # a reader's wrapper (check_volume) of TooLargeError
        result = 'ValueError: memory budget' if 'memory budget' in str(error) else repr(error)
    out[name] = [str(result)[:60], time.perf_counter() - start]
print(json.dumps({'calls': out, 'over_base': rss('VmHWM') - base}))
"""


def test_the_readers_refuse_both_bombs_in_seconds_before_inflating(bombs):
    proc = subprocess.run([sys.executable, "-c", _READERS, str(bombs["nifti"]),
                           str(bombs["dicom"])], capture_output=True, text=True, timeout=300,
                          env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))
    for name, (answer, seconds) in result["calls"].items():
        assert seconds < 5, (name, seconds)
        if name.startswith("check_file"):
            assert answer.startswith("('too_large'"), (name, answer)
        elif name == "header_size(dicom)":
            assert answer == "(40000, 40000)"
        elif name == "dicom_frame_count":
            assert answer == "1"
        elif name == "expand_paths":  # check_volume names the file and the budget
            assert answer == "ValueError: memory budget", answer
        else:
            assert answer == "TooLargeError", (name, answer)
    assert result["over_base"] < 64 * 2 ** 20  # nothing was inflated


@pytest.mark.parametrize("command", ["scan", "train", "predict", "explain", "dicom-report"])
def test_every_command_refuses_both_bombs_under_1_gib(bombs, model_path, command, tmp_path):
    nifti, dicom = bombs["nifti"], bombs["dicom"]
    medivision = [sys.executable, "-c", "import sys; from medivision_tf.cli import main; "
                  "sys.exit(main(sys.argv[1:]))"]
    if command == "scan":
        args = ["scan", bombs["root"] / "data"]
    elif command == "train":
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"backbone": "smallcnn", "weights": None, "image_size": 32,
                                      "channels": 1, "epochs": 1, "fine_tune_epochs": 0}))
        args = ["train", bombs["root"] / "data", "--config", config, "--out", tmp_path / "run"]
    elif command == "dicom-report":
        args = ["dicom-report", model_path, nifti, dicom, "--out", tmp_path / "out", "--quiet"]
    else:
        args = [command, model_path, nifti, dicom, "--quiet"]
        if command == "explain":
            args += ["--out", tmp_path / "out"]
    result = measure(*medivision, *args)
    text = result["out"] + result["err"]
    print(f"{command}: exit {result['rc']}, {result['seconds']:.1f} s, peak "
          f"{result['peak'] / 2 ** 20:.0f} MiB")
    assert "Traceback" not in text, text[-3000:]
    assert result["rc"] != 0  # nothing usable
    for path in (nifti, dicom):
        assert os.path.basename(path) in text
    assert text.count("too_large") >= 2, text[-3000:]
    assert result["peak"] < GIB, result["peak"]


def test_a_real_deflated_dicom_still_reads_exactly_as_pydicom_reads_it():
    import pydicom
    from pydicom.data import get_testdata_file

    from medivision_tf.data.io.dicom import read_dicom
    from medivision_tf.data.io.dicom_budget import inflated_dicom, read_dicom_header

    path = get_testdata_file("image_dfl.dcm")  # Deflated Explicit VR Little Endian, 512 x 512
    assert read_dicom_header(path).Rows == 512
    plain = pydicom.dcmread(inflated_dicom(path))
    assert (plain.pixel_array == pydicom.dcmread(path).pixel_array).all()
    assert read_dicom(path).shape == read_dicom(open(path, "rb").read()).shape == (512, 512)


def test_a_deflated_body_larger_than_its_header_says_is_refused_while_inflating(tmp_path):
    """A small image whose deflated data set hides 80 MB of zeros in a
    private element: the header passes, the stream is cut at the budget."""
    import io

    import pydicom
    from pydicom.data import get_testdata_file

    from medivision_tf.data.io.dicom import read_dicom
    from medivision_tf.data.io.memory_budget import TooLargeError

    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.add_new(0x00991010, "OB", bytes(80 * 2 ** 20))
    dataset.add_new(0x00990010, "LO", "HOSTILE")
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert len(data) < 1_000_000
    with pytest.raises(TooLargeError, match="refused while inflating"):
        read_dicom(data, max_bytes=2 * 2 ** 20)  # inflated: at most 64 + 2 MiB
    assert read_dicom(data).shape == (128, 128)  # within the default budget: read


def test_compressed_frames_are_sized_from_their_code_streams():
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate, generate_frames

    from medivision_tf.data.io.dicom import read_dicom
    from medivision_tf.data.io.dicom_budget import check_encapsulated_frames
    from medivision_tf.data.io.memory_budget import TooLargeError

    dataset = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    check_encapsulated_frames(dataset)  # the real file: fine
    frame = bytearray(next(generate_frames(dataset.PixelData, number_of_frames=1)))
    at = next(i for i in range(len(frame) - 1) if frame[i] == 0xFF and frame[i + 1] in (
        0xC0, 0xC1, 0xC2))
    frame[at + 5:at + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    dataset.PixelData = encapsulate([bytes(frame)])
    with pytest.raises(TooLargeError, match="compressed DICOM frame 0 of 60000x60000"):
        check_encapsulated_frames(dataset)
    import io

    buffer = io.BytesIO()
    dataset.save_as(buffer)
    with pytest.raises(TooLargeError):
        read_dicom(buffer.getvalue())


def test_inflate_stops_at_its_limit_and_reads_every_gzip_member():
    import gzip

    from medivision_tf.data.io.memory_budget import TooLargeError, check_max_bytes, inflate

    two = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 1000)
    assert inflate(two, 5000, 31) == b"a" * 1000 + b"b" * 1000
    assert inflate(two, 1500, 31, truncate=True) == b"a" * 1000 + b"b" * 500
    with pytest.raises(TooLargeError):
        inflate(two, 1500, 31)
    with pytest.raises(ValueError, match="max_bytes"):
        check_max_bytes(0)


def test_the_nifti_refusal_says_how_the_voxels_are_counted(bombs):
    """int16 voxels are read as float32: the message says so, so that 40.2 GiB
    for 6000 x 6000 x 300 int16 voxels (21.6 GB on disk as int16) adds up."""
    from medivision_tf.data.io.memory_budget import TooLargeError, check_nifti_budget

    with pytest.raises(TooLargeError, match=r"6000x6000x300 int16 voxels, read as float32, "
                                            r"would take 40\.2 GiB decoded"):
        check_nifti_budget(bombs["nifti"].read_bytes())
