// Uploads a file with tus-js-client (the tus client browsers and Uppy use), run by Node from
// the directory .ci/setup installs it in (UPLINK_NODE_MODULES). Prints one JSON line: on
// success the upload URL and the Uplink-Hook-Response header as onSuccess reads it from the
// last response; on failure the error and the status of the response that failed.
// Usage: node tus_js_upload.js ENDPOINT TOKEN FILE CHUNK_SIZE
const path = require("path");
const fs = require("fs");
const modules = process.env.UPLINK_NODE_MODULES;
const tus = require(path.join(modules, "tus-js-client"));

const [endpoint, token, file, chunkSize] = process.argv.slice(2);
const size = fs.statSync(file).size;
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  uploadSize: size,
  chunkSize: Number(chunkSize),
  retryDelays: [],
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: path.basename(file) },
  onSuccess: (payload) => {
    const header = payload.lastResponse.getHeader("Uplink-Hook-Response");
    console.log(JSON.stringify({ ok: true, url: upload.url, hook_response: header ?? null }));
  },
  onError: (error) => {
    const response = error.originalResponse;
    console.log(JSON.stringify({
      ok: false,
      error: String(error.message || error),
      status: response ? response.getStatus() : null,
      body: response ? response.getBody() : null,
    }));
  },
});
upload.start();
