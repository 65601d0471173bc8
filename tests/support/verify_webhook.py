"""Verifies one delivered notification with the Standard Webhooks reference library
(PyPI `standardwebhooks`), as a customer's receiver would.

Usage: verify_webhook.py SECRET < {"headers": {...}, "body": "..."}
SECRET is the account secret; the library takes it as whsec_ + base64 of its bytes.
Prints the parsed JSON body for a JSON notification, {"verified": true} for a form one;
exits non-zero (with the library's error) when the signature does not verify.
"""
import base64
import json
import sys

from standardwebhooks import Webhook

secret = sys.argv[1]
request = json.load(sys.stdin)
hook = Webhook("whsec_" + base64.b64encode(secret.encode()).decode())
is_json = request["headers"].get("content-type", "").startswith("application/json")
parsed = hook.verify(request["body"], request["headers"], json_parse=is_json)
print(json.dumps(parsed if is_json else {"verified": True}))
