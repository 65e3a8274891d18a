"""A real Orthanc PACS (with its DICOMweb plugin) on loopback, for the tests.

`start_orthanc(folder, users)` writes a JSON configuration (a free HTTP port
on 127.0.0.1, remote access off, HTTP basic auth with `users`, the DICOMweb
plugin, a temporary storage folder, a DICOM port that is also free) and
starts Debian's `/usr/sbin/Orthanc` on it; `Orthanc.stop()` ends that process
(by its own id). `lua` adds a Lua script (e.g. a `ReceivedInstanceFilter`
that refuses some objects: a half-failed STOW-RS).

`study_files(folder)` copies pydicom's real test files into one study (CT,
MR, an RGB ultrasound, a 30-frame ultrasound, plus an SR and an RT Dose that
must be skipped), each file its own series; the pixels are the files' own.

Example:

```python
server = start_orthanc(tmp_path, {"alice": "s3cret"})
server.upload(path)
server.get("/studies")
server.stop()
```
"""

import json
import os
import shutil
import socket
import subprocess
import time

import requests

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
STUDY_UID = "1.2.826.0.1.3680043.8.498.33033001"


def missing_tools():
    """Why the PACS tests cannot run here (Orthanc, its DICOMweb plugin,
    dciodvfy), or `""`."""
    missing = [name for name, path in (("orthanc (Debian package)", ORTHANC),
                                       ("orthanc-dicomweb (Debian package)", DICOMWEB_PLUGIN))
               if not os.path.exists(path)]
    if shutil.which("dciodvfy") is None:
        missing.append("dciodvfy (Debian package dicom3tools)")
    return ", ".join(missing)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """A running Orthanc: `url` (HTTP root), `dicomweb` (DICOMweb root)."""

    def __init__(self, process, port, auth, log):
        self.process, self.port, self.auth, self.log = process, port, auth, log
        self.url = f"http://127.0.0.1:{port}"
        self.dicomweb = f"{self.url}/dicom-web"

    def get(self, path, **kwargs):
        response = requests.get(self.url + path, auth=self.auth, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if "json" in response.headers.get("Content-Type", "") else (
            response.content)

    def upload(self, path):
        with open(path, "rb") as handle:
            response = requests.post(self.url + "/instances", data=handle.read(),
                                     auth=self.auth, timeout=60)
        response.raise_for_status()
        return response.json()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_orthanc(folder, users, lua=None):
    """Starts Orthanc with its storage and configuration under `folder`.

    Args:
        folder: an empty folder (storage, configuration, log).
        users: `{user: password}` for HTTP basic auth.
        lua: the text of a Lua script, or None.

    Returns:
        An `Orthanc`, answering on its port.
    """
    folder = os.fspath(folder)
    storage = os.path.join(folder, "storage")
    os.makedirs(storage, exist_ok=True)
    port = free_port()
    config = {
        "Name": "medivision-test", "StorageDirectory": storage, "IndexDirectory": storage,
        "HttpPort": port, "DicomPort": free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": dict(users),
        "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpCompressionEnabled": False,
    }
    if lua is not None:
        script = os.path.join(folder, "filter.lua")
        with open(script, "w") as handle:
            handle.write(lua)
        config["LuaScripts"] = [script]
    path = os.path.join(folder, "orthanc.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    log = open(os.path.join(folder, "orthanc.log"), "w")
    process = subprocess.Popen([ORTHANC, path], stdout=log, stderr=subprocess.STDOUT,
                               cwd=folder)
    user, password = next(iter(users.items()))
    server = Orthanc(process, port, (user, password), log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited: {open(log.name).read()[-2000:]}")
        try:
            server.get("/system")
            return server
        except requests.RequestException:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError("Orthanc did not answer within 60 s")


#: pydicom's test files of the study: (file, series number, what it is).
STUDY = (("CT_small.dcm", 1, "CT"), ("MR_small.dcm", 2, "MR"),
         ("examples_rgb_color.dcm", 3, "RGB ultrasound"),
         ("examples_ybr_color.dcm", 4, "30-frame ultrasound (JPEG)"),
         ("test-SR.dcm", 5, "an SR: skipped"), ("rtdose.dcm", 6, "an RT Dose: skipped"))


def study_files(folder):
    """Copies of pydicom's test files in one study (`STUDY_UID`), one series
    each; returns `{file name: path}`."""
    import pydicom
    from pydicom.data import get_testdata_file

    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name, number, _ in STUDY:
        dataset = pydicom.dcmread(get_testdata_file(name))
        dataset.StudyInstanceUID = STUDY_UID
        dataset.SeriesInstanceUID = f"{STUDY_UID}.{number}"
        dataset.SeriesNumber = number
        dataset.PatientID, dataset.PatientName = "MV-TEST-1", "Test^Patient"
        dataset.AccessionNumber = "MVACC1"
        path = os.path.join(os.fspath(folder), name)
        dataset.save_as(path, enforce_file_format=True)
        paths[name] = path
    return paths
