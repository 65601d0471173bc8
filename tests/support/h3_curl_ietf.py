"""An IETF resumable upload (interop version 8) over HTTP/3 with curl_cffi (PyPI: libcurl with
HTTP/3), a second HTTP/3 client not written here besides aioquic: the file's first half is sent
with the creation request (Upload-Complete: ?0), the offset asked with HEAD, and the rest sent
with PATCH (Upload-Complete: ?1).

Usage: h3_curl_ietf.py BASE_URL TOKEN FILE
Prints one JSON object: {"versions": [...], "created": int, "offset": int, "finished": int,
"location": str}; versions are the HTTP versions curl used (30 is HTTP/3).
"""
import json
import sys

from curl_cffi import CurlHttpVersion, requests

base, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(path, "rb").read()
half = len(data) // 2
session = requests.Session(http_version=CurlHttpVersion.V3ONLY, verify=False, timeout=60)
common = {"authorization": f"Bearer {token}", "upload-draft-interop-version": "8"}

created = session.post(f"{base}/files/", data=data[:half], headers={
    **common, "upload-complete": "?0", "upload-length": str(len(data))})
location = created.headers["location"]
url = location if location.startswith("http") else base + location
head = session.head(url, headers=common)
offset = int(head.headers["upload-offset"])
finished = session.patch(url, data=data[offset:], headers={
    **common, "upload-offset": str(offset), "upload-complete": "?1",
    "content-type": "application/partial-upload"})
print(json.dumps({
    "versions": [created.http_version, head.http_version, finished.http_version],
    "created": created.status_code, "offset": offset, "finished": finished.status_code,
    "location": location,
}))
