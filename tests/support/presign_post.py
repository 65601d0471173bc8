# Prints an S3 presigned POST (URL and form fields) made by boto3's own generate_presigned_post.
# Usage: presign_post.py ENDPOINT ACCESS_KEY SECRET BUCKET SIGNATURE_VERSION(s3v4|s3)
import json, sys
import boto3
from botocore.config import Config
endpoint, access_key, secret, bucket, version = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(signature_version=version, s3={"addressing_style": "path"}))
post = s3.generate_presigned_post(Bucket=bucket, Key="clips/${filename}",
                                  Conditions=[["content-length-range", 1, 10000000]], ExpiresIn=600)
print(json.dumps(post))
