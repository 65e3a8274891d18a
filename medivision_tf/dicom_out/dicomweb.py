"""A DICOMweb client for one study: QIDO-RS list, WADO-RS fetch, STOW-RS store.

`DicomWebStudy(url, study_uid)` wraps `dicomweb_client.DICOMwebClient` on a
`requests` session that:

- takes credentials from the environment (`MEDIVISION_DICOMWEB_USER` +
  `MEDIVISION_DICOMWEB_PASSWORD` for HTTP basic auth, or
  `MEDIVISION_DICOMWEB_TOKEN` for a bearer token) or from a netrc file
  (`$NETRC` or `~/.netrc`, the entry of the server's host); a URL with
  credentials in it is refused: they would show in shell histories and
  process lists. Credentials are never logged or printed;
- verifies TLS certificates (`verify=True`, or a CA bundle path); turning it
  off takes an explicit `verify=False`;
- gives every request a timeout and no retries, so a server that is down or
  slow ends as one `DicomWebError` (a `ValueError`) that names what failed:
  unreachable, timed out, credentials refused (401/403), not found (404),
  another 4xx, a server error (5xx), or a TLS failure;
- caps every response (`max_response_bytes`, 1 GiB by default): the
  Content-Length is checked before the body is read, and the body is counted
  as it streams in; an instance is fetched (WADO-RS) as raw bytes and written
  to a file without being parsed, so the readers' memory budget applies to it
  as to any local file.

Example:

```python
from medivision_tf.dicom_out.dicomweb import DicomWebStudy

study = DicomWebStudy("http://127.0.0.1:8042/dicom-web", "1.2.3.4")
for series in study.series():
    for instance in study.instances(series["uid"]):
        study.fetch(series["uid"], instance["uid"], "/tmp/x.dcm")
```
"""

import netrc
import os
import urllib.parse

from medivision_tf.dicom_out.requirements import require_pacs

USER_VARIABLE = "MEDIVISION_DICOMWEB_USER"
PASSWORD_VARIABLE = "MEDIVISION_DICOMWEB_PASSWORD"
TOKEN_VARIABLE = "MEDIVISION_DICOMWEB_TOKEN"
#: The largest response accepted (one WADO-RS instance, a QIDO-RS list).
DEFAULT_MAX_RESPONSE_BYTES = 2 ** 30
DEFAULT_TIMEOUT = 30.0


class DicomWebError(ValueError):
    """A DICOMweb request that failed; the message says which and why."""


class ResponseTooLarge(DicomWebError):
    """A response over the size cap (read no further)."""


def safe_url(url):
    """The URL without credentials, query or fragment (for messages)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def credentials(url, netrc_file=None):
    """`(kind, value, source)` of the credentials for `url`, or None.

    `kind` is `"basic"` (value: `(user, password)`) or `"bearer"` (value: the
    token); `source` names where they came from (an environment variable or
    the netrc file), never the credentials themselves.

    Raises:
        DicomWebError: credentials in the URL, a user without a password, or
            an unreadable netrc file named explicitly.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        raise DicomWebError(
            "Credentials in the DICOMweb URL are refused (they would show in shell history and "
            f"process lists): set {USER_VARIABLE} and {PASSWORD_VARIABLE} (or {TOKEN_VARIABLE}) "
            "in the environment, or put them in a netrc file.")
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        return "bearer", token, f"${TOKEN_VARIABLE}"
    user = os.environ.get(USER_VARIABLE)
    if user:
        password = os.environ.get(PASSWORD_VARIABLE)
        if password is None:
            raise DicomWebError(f"${USER_VARIABLE} is set but ${PASSWORD_VARIABLE} is not.")
        return "basic", (user, password), f"${USER_VARIABLE}/${PASSWORD_VARIABLE}"
    path = netrc_file or os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        if netrc_file:
            raise DicomWebError(f"The netrc file {netrc_file!r} does not exist.")
        return None
    try:
        entry = netrc.netrc(path).authenticators(parts.hostname or "")
    except (netrc.NetrcParseError, OSError) as error:
        raise DicomWebError(f"The netrc file {path!r} cannot be read: "
                            f"{type(error).__name__}") from None
    if entry is None:
        return None
    login, _, password = entry
    return "basic", (login or "", password or ""), f"netrc file {path!r}"


def _session(url, timeout, max_bytes, verify, netrc_file):
    import requests
    from requests.adapters import HTTPAdapter

    class _Adapter(HTTPAdapter):
        def send(self, request, **kwargs):
            kwargs["timeout"] = timeout
            return super().send(request, **kwargs)

    session = requests.Session()
    session.trust_env = False  # no implicit netrc or proxies: what is used is said here
    session.verify = verify
    for prefix in ("http://", "https://"):
        session.mount(prefix, _Adapter(max_retries=0))
    found = credentials(url, netrc_file)
    session.credential_source = found[2] if found else None
    if found and found[0] == "basic":
        session.auth = found[1]
    elif found:
        session.headers["Authorization"] = f"Bearer {found[1]}"
    session.hooks["response"].append(_size_cap(max_bytes))
    return session


class _CappedBody:
    """A urllib3 response whose body stops at `limit` bytes."""

    def __init__(self, raw, limit):
        self._raw, self._limit, self._seen = raw, limit, 0

    def _count(self, data):
        self._seen += len(data)
        if self._seen > self._limit:
            self._raw.close()
            raise ResponseTooLarge(
                f"The DICOMweb response is larger than the size cap of {self._limit} bytes: "
                "refused while reading it.")
        return data

    def stream(self, amt=2 ** 16, decode_content=None):
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            yield self._count(chunk)

    def read(self, *args, **kwargs):
        return self._count(self._raw.read(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._raw, name)


def _size_cap(limit):
    def hook(response, *args, **kwargs):
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            response.close()
            raise ResponseTooLarge(
                f"The DICOMweb response announces {int(length)} bytes, more than the size cap "
                f"of {limit} bytes: not read.")
        response.raw = _CappedBody(response.raw, limit)
        return response

    return hook


class DicomWebStudy:
    """One study on a DICOMweb server (see the module docstring).

    Args:
        url: the DICOMweb root, e.g. `http://127.0.0.1:8042/dicom-web`.
        study_uid: the Study Instance UID.
        timeout: seconds per request (connect and each read).
        max_response_bytes: the size cap of one response.
        verify: True (default: the system's CA certificates), a CA bundle
            path, or False (no TLS verification: only for a test server).
        netrc_file: a netrc file to read credentials from (default: `$NETRC`
            or `~/.netrc`, when no environment variable gives them).
    """

    def __init__(self, url, study_uid, timeout=DEFAULT_TIMEOUT,
                 max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES, verify=True, netrc_file=None):
        require_pacs("dicomweb-client")
        from dicomweb_client.api import DICOMwebClient

        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise DicomWebError(f"The DICOMweb URL must start with http:// or https://. "
                                f"Received: {safe_url(url)!r}")
        if not study_uid or not all(c.isdigit() or c == "." for c in study_uid):
            raise DicomWebError(f"A Study Instance UID is digits and dots. Received: {study_uid!r}")
        self.url, self.study_uid, self.timeout = url.rstrip("/"), study_uid, timeout
        self.session = _session(url, timeout, max_response_bytes, verify, netrc_file)
        self.client = DICOMwebClient(self.url, session=self.session, timeout=timeout)
        self.client.set_http_retry_params(retry=False)

    @property
    def credential_source(self):
        """Where the credentials came from (never the credentials), or None."""
        return self.session.credential_source

    def _call(self, what, function, *args, **kwargs):
        """Runs a request; every failure becomes one `DicomWebError`."""
        import requests

        where = safe_url(self.url)
        try:
            return function(*args, **kwargs)
        except DicomWebError:
            raise
        except requests.exceptions.SSLError:
            raise DicomWebError(
                f"{what}: the TLS certificate of {where} could not be verified. Give the "
                "server's CA bundle (--ca-bundle) rather than turning verification off.") from None
        except requests.exceptions.Timeout:
            raise DicomWebError(f"{what}: {where} did not answer within {self.timeout:g} s "
                                "(timed out).") from None
        except requests.exceptions.ConnectionError:
            raise DicomWebError(f"{what}: {where} cannot be reached (connection refused or "
                                "no route): is the server running?") from None
        except requests.exceptions.HTTPError as error:
            raise http_error(what, where, error.response, self.credential_source) from None
        except requests.exceptions.RequestException as error:
            raise DicomWebError(f"{what}: request to {where} failed "
                                f"({type(error).__name__}).") from None

    def series(self):
        """The study's series (QIDO-RS): dicts with `uid`, `modality`, `number`."""
        found = self._call(f"listing the series of study {self.study_uid}",
                           self.client.search_for_series, study_instance_uid=self.study_uid)
        if not found:
            raise DicomWebError(f"Study {self.study_uid} has no series on "
                                f"{safe_url(self.url)} (not found, or empty).")
        return [{"uid": _value(s, "0020000E"), "modality": _value(s, "00080060"),
                 "number": _value(s, "00200011")} for s in found]

    def instances(self, series_uid):
        """A series' instances (QIDO-RS): dicts with `uid`, `sop_class`, `number`."""
        found = self._call(f"listing the instances of a series of study {self.study_uid}",
                           self.client.search_for_instances, study_instance_uid=self.study_uid,
                           series_instance_uid=series_uid)
        return [{"uid": _value(i, "00080018"), "sop_class": _value(i, "00080016"),
                 "number": _value(i, "00200013")} for i in found or ()]

    def listed(self, series_uid):
        """The SOP Instance UIDs the server lists in a series (QIDO-RS): how
        a store is confirmed (a server may answer STOW-RS with success for an
        object it then drops, e.g. one its filters refuse)."""
        return {i["uid"] for i in self.instances(series_uid)}

    def fetch(self, series_uid, instance_uid, path):
        """Fetches one instance (WADO-RS, the stored transfer syntax) into a
        file, unparsed; returns the path."""
        url = (f"{self.url}/studies/{self.study_uid}/series/{series_uid}"
               f"/instances/{instance_uid}")
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'

        def get():
            response = self.session.get(url, headers={"Accept": accept})
            response.raise_for_status()
            return response

        response = self._call("fetching an instance (WADO-RS)", get)
        parts = multipart_parts(response.content, response.headers.get("Content-Type", ""))
        if len(parts) != 1:
            raise DicomWebError(f"fetching an instance (WADO-RS): expected one DICOM part, "
                                f"got {len(parts)}.")
        with open(path, "wb") as handle:
            handle.write(parts[0])
        return path

    def store(self, datasets):
        """Stores objects (STOW-RS, one request); returns `{SOP Instance UID:
        None (stored) or the failure reason}` for each object.

        Raises:
            DicomWebError: the request failed as a whole (unreachable, timed
                out, 4xx/5xx without a per-instance answer).
        """
        import requests

        uids = [str(d.SOPInstanceUID) for d in datasets]

        def attempt():
            try:
                return self.client.store_instances(datasets, study_instance_uid=self.study_uid)
            except requests.exceptions.HTTPError as error:
                answer = _stow_answer(error.response)  # a per-instance answer: kept
                if answer is None:
                    raise
                return answer

        answer = self._call("storing the results (STOW-RS)", attempt)
        outcome = {uid: "the server did not confirm it" for uid in uids}
        for item in answer.get("ReferencedSOPSequence", []) or []:
            uid = str(item.get("ReferencedSOPInstanceUID", ""))
            if uid in outcome:
                outcome[uid] = None
        for item in answer.get("FailedSOPSequence", []) or []:
            uid = str(item.get("ReferencedSOPInstanceUID", ""))
            if uid in outcome:
                reason = item.get("FailureReason")
                outcome[uid] = f"refused by the server (failure reason {_hex(reason)})"
        return outcome


def _hex(value):
    try:
        return f"0x{int(value):04X}"
    except (TypeError, ValueError):
        return str(value)


def _stow_answer(response):
    """The STOW-RS response data set of a 4xx/5xx answer, or None."""
    import pydicom

    if response is None or not response.content:
        return None
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        answer = pydicom.Dataset.from_json(response.json())
    except Exception:
        return None
    return answer if ("FailedSOPSequence" in answer or "ReferencedSOPSequence" in answer) else None


def http_error(what, where, response, credential_source=None):
    """The one `DicomWebError` of an HTTP error status."""
    status = getattr(response, "status_code", None)
    if status in (401, 403):
        given = (f"the credentials from {credential_source} were refused" if credential_source
                 else f"no credentials were given (set ${USER_VARIABLE} and ${PASSWORD_VARIABLE}, "
                 f"${TOKEN_VARIABLE}, or a netrc entry for the host)")
        return DicomWebError(f"{what}: {where} answered HTTP {status} "
                             f"({'unauthorized' if status == 401 else 'forbidden'}): {given}.")
    if status == 404:
        return DicomWebError(f"{what}: {where} answered HTTP 404 (not found): check the URL "
                             "(the DICOMweb root, e.g. .../dicom-web) and the UIDs.")
    if status is not None and status >= 500:
        return DicomWebError(f"{what}: {where} answered HTTP {status} (server error).")
    return DicomWebError(f"{what}: {where} answered HTTP {status} (request refused).")


def multipart_parts(content, content_type):
    """The bodies of a `multipart/related` message (WADO-RS)."""
    boundary = None
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        if content[:132][128:132] == b"DICM":  # a single application/dicom body
            return [content]
        raise DicomWebError(f"Unexpected WADO-RS answer (Content-Type {content_type!r}).")
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in content.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, body = chunk.partition(b"\r\n\r\n")
        parts.append(body[:-2] if body.endswith(b"\r\n") else body)
    return parts


def _value(item, tag):
    values = (item.get(tag) or {}).get("Value") or [None]
    return None if values[0] is None else str(values[0])
