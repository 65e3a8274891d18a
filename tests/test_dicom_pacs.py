"""`medivision dicom-report` against a real Orthanc PACS on loopback (issue 33).

A module fixture starts Debian's Orthanc with its DICOMweb plugin and HTTP
basic auth (`orthanc_server.py`) and uploads pydicom's real test files as one
study (CT, MR, an RGB ultrasound, a 30-frame ultrasound, an SR and an RT
Dose). A tiny MediVision with trust values is trained on synthetic images.
The command runs in this process (`medivision_tf.cli.main`), so its output
and every log record can be searched for credentials and patient data.
Every object written is validated by `dciodvfy`; the failure modes (server
down, timeout, wrong credentials, 5xx, a half-failed STOW-RS, a response
over the size cap) each give one clear message.
"""

import glob
import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from orthanc_server import STUDY_UID, free_port, missing_tools, start_orthanc, study_files  # noqa: E402

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=(
    f"the PACS tests need {missing_tools()} (CI installs them with apt-get)"))

USER, PASSWORD = "radiology-ai", "Pa55-not-in-logs"
PATIENT = ("Test^Patient", "MV-TEST-1", "MVACC1")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    import keras

    import medivision_tf
    from medivision_tf.data import make_synthetic_lesions
    from medivision_tf.trust import fit_trust

    train = make_synthetic_lesions(60, 32, 2, seed=20)
    val = make_synthetic_lesions(40, 32, 2, seed=21)
    keras.utils.set_random_seed(0)
    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(32, 32, 1), lstm_units=8,
        attention_units=4, class_names=["normal", "lesion"], name="pacs_test_model")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.images, train.labels, batch_size=32, epochs=1, verbose=0)
    model = fit_trust(model, val.images, val.labels, alpha=0.2)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return study_files(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, study):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"), {USER: PASSWORD})
    for path in study.values():
        server.upload(path)
    yield server
    server.stop()


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("MEDIVISION_DICOMWEB_USER", USER)
    monkeypatch.setenv("MEDIVISION_DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.delenv("MEDIVISION_DICOMWEB_TOKEN", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)


def run(capsys, *args):
    """`medivision ARGS` in this process: (exit code, stdout, stderr)."""
    from medivision_tf.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _series(orthanc):
    studies = [s for s in orthanc.get("/studies?expand")
               if s["MainDicomTags"]["StudyInstanceUID"] == STUDY_UID]
    assert len(studies) == 1
    return [orthanc.get(f"/series/{uid}") for uid in studies[0]["Series"]]


def _sr_findings(dataset):
    """{tracking identifier: {concept meaning: [values]}} of a TID 1500 SR."""
    groups = {}
    for container in dataset.ContentSequence:
        if container.ConceptNameCodeSequence[0].CodeMeaning != "Imaging Measurements":
            continue
        for group in container.ContentSequence:
            items = {}
            for item in group.ContentSequence:
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                if item.ValueType == "NUM":
                    value = float(item.MeasuredValueSequence[0].NumericValue)
                elif item.ValueType == "CODE":
                    value = item.ConceptCodeSequence[0].CodeMeaning
                elif item.ValueType == "IMAGE":
                    value = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                else:
                    value = str(getattr(item, "TextValue", getattr(item, "UID", "")))
                items.setdefault(name, []).append(value)
            groups[items["Tracking Identifier"][0]] = items
    return groups


def test_dicom_report_stores_an_sr_and_heatmap_series_per_series(
        orthanc, model_path, study, credentials, capsys, caplog, tmp_path):
    import pydicom

    import medivision_tf
    from medivision_tf.prediction import predict_files

    caplog.set_level(logging.DEBUG)
    out = tmp_path / "results"
    code, stdout, stderr = run(capsys, "dicom-report", model_path, "--dicomweb", orthanc.dicomweb,
                               "--study", STUDY_UID, "--store", "--out", out, "--quiet")
    assert code == 0, stderr
    assert "Stored 8 of 8 objects" in stdout
    assert "series 5 (SR) instance 1\tskipped: Comprehensive SR Storage" in stdout
    assert "series 6 (RTDOSE) instance 1\tskipped: RT Dose Storage" in stdout
    # No credentials, no patient data in the output or any log record.
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PASSWORD, *PATIENT):
        assert secret not in stdout + stderr + logs, secret
    # Orthanc lists, in the same study: 6 source series + per image series an SR and heatmaps.
    series = _series(orthanc)
    descriptions = sorted(s["MainDicomTags"].get("SeriesDescription", "") for s in series)
    assert len(series) == 14
    assert descriptions.count("MediVision AI result (research use only)") == 4
    assert descriptions.count("MediVision Grad-CAM heatmap (research use only)") == 4
    # The answer of `medivision predict` (predict_files) for the same files.
    model = medivision_tf.load_model(model_path, compile=False)
    names = ["CT_small.dcm", "MR_small.dcm", "examples_rgb_color.dcm", "examples_ybr_color.dcm"]
    expected = predict_files(model, [study[n] for n in names], verbose=False)
    by_modality = {}
    for item in series:
        if item["MainDicomTags"].get("SeriesDescription", "").startswith("MediVision AI"):
            (instance,) = item["Instances"]
            dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(
                orthanc.get(f"/instances/{instance}/file")))
            by_modality[item["MainDicomTags"]["SeriesNumber"]] = dataset
    sources = {n: pydicom.dcmread(study[n], stop_before_pixels=True) for n in names}
    for (name, row), number in zip(zip(names, expected.to_dict("records")),
                                   ("9902", "9904", "9906", "9908")):
        sr = by_modality[number]
        source = sources[name]
        assert sr.StudyInstanceUID == STUDY_UID and sr.PatientID == "MV-TEST-1"
        assert str(sr.PatientName) == "Test^Patient" and sr.AccessionNumber == "MVACC1"
        evidence = {ref.ReferencedSOPInstanceUID
                    for study_ref in sr.CurrentRequestedProcedureEvidenceSequence
                    for series_ref in study_ref.ReferencedSeriesSequence
                    for ref in series_ref.ReferencedSOPSequence}
        assert evidence == {source.SOPInstanceUID}
        groups = _sr_findings(sr)
        assert set(groups) == {"series", next(k for k in groups if k.startswith("instance 1"))}
        for finding in groups.values():
            assert finding["Finding"] == [row["class"]]
            assert finding["Probability of the predicted class"][0] == pytest.approx(
                row["probability"], abs=1e-6)
            assert finding["Prediction set member"] == row["prediction_set"].split("|")
            assert finding["Out-of-distribution"] == ["Yes" if row["out_of_distribution"] else "No"]
            # Relative too: the default (combined) score is in standard deviations of the
            # validation scores, so float32 noise grows with it (about 50 here).
            assert finding["Out-of-distribution score"][0] == pytest.approx(
                row["ood_score"], rel=1e-5, abs=1e-5)
            assert finding["Source of Measurement"] == [source.SOPInstanceUID]
            assert "config_sha256=" in finding["Algorithm Parameters"][0]
            assert finding["Algorithm Name"] == ["pacs_test_model"]
        # ... and the line the command printed says the same.
        assert f"{row['class']}\t{row['probability']:.4f}" in stdout
    # The heatmaps: Secondary Capture, RGB, burned-in, in the study, pointing at their source.
    for item in series:
        if item["MainDicomTags"].get("SeriesDescription", "").startswith("MediVision Grad-CAM"):
            (instance,) = item["Instances"]
            image = pydicom.dcmread(pydicom.filebase.DicomBytesIO(
                orthanc.get(f"/instances/{instance}/file")))
            assert image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
            assert image.BurnedInAnnotation == "YES" and image.PhotometricInterpretation == "RGB"
            assert image.StudyInstanceUID == STUDY_UID
            assert image.SourceImageSequence[0].ReferencedSOPInstanceUID in {
                s.SOPInstanceUID for s in sources.values()}
            assert image.pixel_array.shape[2] == 3
    report = json.loads((out / "report.json").read_text())
    assert all(o["stored"] for o in report["objects"]) and len(report["objects"]) == 8
    for path in glob.glob(str(out / "*" / "*.dcm")):
        _dciodvfy_errors(path)  # every written object is valid


def _dciodvfy_errors(path):
    proc = subprocess.run(["dciodvfy", path], capture_output=True, text=True, timeout=60)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines()
              if line.startswith("Error")]
    assert not errors, (path, errors)
    return proc


def test_local_files_give_valid_objects_and_per_frame_findings(model_path, study, capsys,
                                                                tmp_path):
    import pydicom

    import medivision_tf
    from medivision_tf.dicom_out.report import dicom_report

    out = tmp_path / "local"
    code, stdout, stderr = run(capsys, "dicom-report", model_path, os.path.dirname(study[
        "CT_small.dcm"]), "--out", out, "--quiet")
    assert code == 0, stderr
    assert stdout.count("\tseries: ") == 4 and "Wrote 8 DICOM objects (4 SR" in stdout
    for path in sorted(glob.glob(str(out / "*" / "*.dcm"))):
        _dciodvfy_errors(path)
        if path.endswith("report_sr.dcm"):
            dump = subprocess.run(["dsrdump", path], capture_output=True, text=True, timeout=60)
            assert dump.returncode == 0 and "Imaging Measurement Report" in dump.stdout
    # A model trained on every frame: one finding per frame, one per instance.
    frames_model = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(32, 32, 1), lstm_units=4,
        attention_units=4, class_names=["normal", "lesion"], decode={"frames": "all"})
    result = dicom_report(frames_model, [study["examples_ybr_color.dcm"]], tmp_path / "frames",
                          verbose=False)
    (series,) = result.series
    labels = [f["label"] for f in series.findings]
    assert labels == [f"instance 1 frame {k}" for k in range(1, 31)] + ["instance 1"]
    assert sum(o.kind == "heatmap" for o in result.written) == 30
    sr = pydicom.dcmread(next(o.path for o in result.written if o.kind == "SR"))
    groups = _sr_findings(sr)
    assert len(groups) == 32  # 30 frames, the instance, the series
    frame_refs = [item.ReferencedSOPSequence[0].ReferencedFrameNumber
                  for container in sr.ContentSequence if container.ValueType == "CONTAINER"
                  for group in container.ContentSequence for item in group.ContentSequence
                  if item.ValueType == "IMAGE" and "ReferencedFrameNumber" in
                  item.ReferencedSOPSequence[0]]
    assert sorted(int(f) for f in frame_refs) == list(range(1, 31))
    _dciodvfy_errors(next(o.path for o in result.written if o.kind == "SR"))
    mean = np.mean([f["probabilities"] for f in series.findings[:30]], axis=0)
    assert series.summary["probability"] == pytest.approx(mean.max())


def test_non_dicom_input_is_refused(model_path, capsys, tmp_path):
    import cv2
    import nibabel

    png = tmp_path / "x.png"
    cv2.imwrite(str(png), np.zeros((8, 8), np.uint8))
    nii = tmp_path / "brain.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((8, 8, 4), "float32"), np.eye(4)), str(nii))
    code, _, stderr = run(capsys, "dicom-report", model_path, png, nii, "--out", tmp_path / "o")
    assert code == 2
    assert "DICOM results need DICOM input" in stderr and "PNG" in stderr and "NIfTI" in stderr


def test_a_server_that_is_down_gives_one_clear_error(model_path, credentials, capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    code, stdout, stderr = run(capsys, "dicom-report", model_path, "--dicomweb", url, "--study",
                               STUDY_UID, "--out", tmp_path / "o")
    assert code == 2 and stderr.count("error:") == 1
    assert "cannot be reached (connection refused or no route): is the server running?" in stderr
    assert not os.path.exists(tmp_path / "o" / "report.json")


class _Silent:
    """A loopback server that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port, self.held = self.sock.getsockname()[1], []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            while True:
                self.held.append(self.sock.accept()[0])
        except OSError:
            return

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_a_slow_server_times_out_with_one_clear_error(model_path, credentials, capsys, tmp_path):
    server = _Silent()
    try:
        code, _, stderr = run(capsys, "dicom-report", model_path, "--dicomweb",
                              f"http://127.0.0.1:{server.port}/dicom-web", "--study", STUDY_UID,
                              "--timeout", "1", "--out", tmp_path / "o")
    finally:
        server.close()
    assert code == 2 and "did not answer within 1 s (timed out)" in stderr


def test_wrong_credentials_are_refused_and_never_shown(orthanc, model_path, monkeypatch, capsys,
                                                       caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MEDIVISION_DICOMWEB_USER", USER)
    monkeypatch.setenv("MEDIVISION_DICOMWEB_PASSWORD", "wrong-Pa55word")
    code, stdout, stderr = run(capsys, "dicom-report", model_path, "--dicomweb", orthanc.dicomweb,
                               "--study", STUDY_UID, "--out", tmp_path / "o")
    assert code == 2
    assert ("answered HTTP 401 (unauthorized): the credentials from "
            "$MEDIVISION_DICOMWEB_USER/$MEDIVISION_DICOMWEB_PASSWORD were refused") in stderr
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-Pa55word" not in stdout + stderr + logs
    # Credentials in the URL are refused before anything is sent.
    url = orthanc.dicomweb.replace("http://", f"http://{USER}:{PASSWORD}@")
    code, _, stderr = run(capsys, "dicom-report", model_path, "--dicomweb", url, "--study",
                          STUDY_UID)
    assert code == 2 and "Credentials in the DICOMweb URL are refused" in stderr
    assert PASSWORD not in stderr


class _Status(http.server.BaseHTTPRequestHandler):
    status = 500

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b"internal error"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_server_error_gives_one_clear_error(model_path, credentials, capsys, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, _, stderr = run(capsys, "dicom-report", model_path, "--dicomweb",
                              f"http://127.0.0.1:{server.server_port}/dicom-web", "--study",
                              STUDY_UID, "--out", tmp_path / "o")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 2 and "answered HTTP 500 (server error)" in stderr


# Orthanc drops our SRs (its answer to STOW-RS still says success).
_DROP_SR = """
function ReceivedInstanceFilter(dicom, origin, info)
  local description = dicom.SeriesDescription or ''
  return string.find(description, 'MediVision AI result', 1, true) == nil
end
"""


def test_a_half_failed_store_says_what_was_not_stored(model_path, study, credentials, capsys,
                                                      tmp_path):
    server = start_orthanc(tmp_path / "pacs", {USER: PASSWORD}, lua=_DROP_SR)
    try:
        server.upload(study["CT_small.dcm"])
        code, stdout, stderr = run(capsys, "dicom-report", model_path, "--dicomweb",
                                   server.dicomweb, "--study", STUDY_UID, "--store", "--out",
                                   tmp_path / "o", "--quiet")
        descriptions = [s["MainDicomTags"].get("SeriesDescription", "") for s in _series(server)]
    finally:
        server.stop()
    assert code == 1
    assert "Stored 1 of 2 objects" in stdout
    assert "NOT stored: SR of series 1 (CT)" in stdout and "does not list it" in stdout
    assert "1 of 2 objects were NOT stored" in stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert {o["kind"]: o["stored"] for o in report["objects"]} == {"heatmap": True, "SR": False}
    assert "MediVision Grad-CAM heatmap (research use only)" in descriptions
    assert "MediVision AI result (research use only)" not in descriptions


def test_wado_responses_are_capped(orthanc, credentials):
    from medivision_tf.dicom_out.dicomweb import DicomWebStudy, ResponseTooLarge

    lister = DicomWebStudy(orthanc.dicomweb, STUDY_UID)
    series = {s["modality"]: s["uid"] for s in lister.series()}
    (instance,) = lister.instances(series["CT"])
    capped = DicomWebStudy(orthanc.dicomweb, STUDY_UID, max_response_bytes=10_000)
    with pytest.raises(ResponseTooLarge, match="size cap of 10000 bytes"):
        capped.fetch(series["CT"], instance["uid"], os.devnull)
    with pytest.raises(ResponseTooLarge):  # a QIDO-RS listing too
        DicomWebStudy(orthanc.dicomweb, STUDY_UID, max_response_bytes=200).series()


def test_netrc_credentials_and_a_missing_extra(orthanc, monkeypatch, tmp_path):
    from medivision_tf.dicom_out import requirements
    from medivision_tf.dicom_out.dicomweb import DicomWebStudy

    for name in ("MEDIVISION_DICOMWEB_USER", "MEDIVISION_DICOMWEB_PASSWORD",
                 "MEDIVISION_DICOMWEB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    netrc.chmod(0o600)
    client = DicomWebStudy(orthanc.dicomweb, STUDY_UID, netrc_file=str(netrc))
    assert len(client.series()) >= 6 and client.credential_source == f"netrc file {str(netrc)!r}"
    monkeypatch.setattr(requirements.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'medivision-tf\[pacs\]'"):
        requirements.require_pacs()


def test_an_image_file_cut_short_is_a_problem_not_a_non_image(model_path, study, capsys,
                                                                tmp_path):
    # pydicom's CT_small.dcm cut at 2,000 bytes, before its image module: the
    # header names CT Image Storage but holds no Rows/Columns. It is reported as
    # damaged and the run exits 1 (a skipped image), not passed over as an SR is.
    folder = tmp_path / "study"
    folder.mkdir()
    with open(study["CT_small.dcm"], "rb") as f:
        (folder / "ct_cut.dcm").write_bytes(f.read(2000))
    with open(study["MR_small.dcm"], "rb") as f:
        (folder / "mr.dcm").write_bytes(f.read())
    code, stdout, stderr = run(capsys, "dicom-report", model_path, folder, "--out",
                               tmp_path / "out", "--quiet")
    assert code == 1, stdout + stderr
    assert "CT Image Storage without Rows/Columns: the file ends before its image" in (
        stdout + stderr)
    assert "1 image(s) skipped" in stdout + stderr
