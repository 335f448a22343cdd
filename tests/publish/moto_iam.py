"""Sets up a moto server started with INITIAL_NO_AUTH_ACTION_COUNT=5 so that
it enforces IAM from then on: a user allowed s3:* and a user allowed nothing,
each with an access key, then the buckets named on the command line, created
by the allowed user (signed). Prints the two key pairs as JSON.

usage: moto_iam.py ENDPOINT BUCKET...
"""
import json
import sys

import boto3

# The actions made before IAM is enforced (moto counts them): keep in step
# with tests/common/moto.rs (SETUP_ACTIONS).
endpoint, buckets = sys.argv[1], sys.argv[2:]
region = "us-east-1"
setup = dict(endpoint_url=endpoint, region_name=region,
             aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **setup)
keys = {}
iam.create_user(UserName="publisher")                                   # 1
allowed = iam.create_access_key(UserName="publisher")["AccessKey"]      # 2
iam.put_user_policy(                                                    # 3
    UserName="publisher", PolicyName="s3",
    PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
iam.create_user(UserName="nobody")                                      # 4
denied = iam.create_access_key(UserName="nobody")["AccessKey"]          # 5
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                  aws_access_key_id=allowed["AccessKeyId"],
                  aws_secret_access_key=allowed["SecretAccessKey"])
for b in buckets:
    s3.create_bucket(Bucket=b)
print(json.dumps({
    "allowed": [allowed["AccessKeyId"], allowed["SecretAccessKey"]],
    "denied": [denied["AccessKeyId"], denied["SecretAccessKey"]],
}))
