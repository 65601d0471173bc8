# Uploads a file with tuspy (an independent tus 1.0 client), optionally stopping after
# STOP_AT bytes and resuming with a fresh uploader from the upload's URL, as a client does
# after a lost connection; or continuing an upload at URL (begun elsewhere) from its HEAD.
# Prints the upload URL.
# Usage: tus_upload.py ENDPOINT TOKEN FILE CHUNK_SIZE [STOP_AT | URL]
import sys
from tusclient import client

endpoint, token, path, chunk_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
last = sys.argv[5] if len(sys.argv) > 5 else None
resume_url = last if last and last.startswith("http") else None
stop_at = int(last) if last and not resume_url else None
tus = client.TusClient(endpoint, headers={"Authorization": "Bearer " + token})
if resume_url:
    uploader = tus.uploader(path, chunk_size=chunk_size, url=resume_url)
    uploader.upload()
    print(resume_url)
    sys.exit(0)
uploader = tus.uploader(path, chunk_size=chunk_size, metadata={"filename": path.rsplit("/", 1)[-1]})
if stop_at is not None:
    uploader.upload(stop_at=stop_at)
    url = uploader.url
    # A new client session: only the URL survives; the offset comes from HEAD.
    resumed = client.TusClient(endpoint, headers={"Authorization": "Bearer " + token}).uploader(
        path, chunk_size=chunk_size, url=url)
    assert resumed.offset >= stop_at, (resumed.offset, stop_at)
    resumed.upload()
else:
    uploader.upload()
    url = uploader.url
print(url)
