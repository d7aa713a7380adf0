"""The S3 endpoint driven by boto3, as an app would drive it (issue 16).

Run by scripts/s3-clients.sh, which starts `nuage serve` and makes the access keys:
NUAGE_API (the /v1 API, for its /metrics, and the account NUAGE_ACCOUNT with NUAGE_PASSWORD), NUAGE_S3_ENDPOINT, NUAGE_S3_KEY/NUAGE_S3_SECRET (a key of the whole account),
NUAGE_S3_RO_KEY/NUAGE_S3_RO_SECRET (read only), NUAGE_S3_SCOPED_KEY/NUAGE_S3_SCOPED_SECRET
(limited to the bucket NUAGE_S3_SCOPED_BUCKET). Every test makes its own bucket.
"""

import base64
import datetime
import hashlib
import io
import json
import os
import threading
import unittest
import urllib.error
import urllib.request
import uuid
import zlib
from unittest import mock

import boto3
import botocore
from botocore.auth import HmacV1Auth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ["NUAGE_S3_ENDPOINT"]


def client(key="NUAGE_S3_KEY", secret="NUAGE_S3_SECRET", **config):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=os.environ[key],
        aws_secret_access_key=os.environ[secret],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, **config),
    )


def signed(method, url, when, body=None, presign_for=None):
    """A request signed with SigV4 (headers, or a query string valid `presign_for` seconds)
    as of `when`, by botocore's own signers (pure Python whatever the installed CRT)."""
    creds = Credentials(os.environ["NUAGE_S3_KEY"], os.environ["NUAGE_S3_SECRET"])
    request = AWSRequest(method=method, url=url, data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        if presign_for is None:
            S3SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
        else:
            S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=presign_for).add_auth(request)
    prepared = request.prepare()
    return urllib.request.Request(prepared.url, data=body, method=method, headers=dict(prepared.headers))


def written():
    """What the server has written to its providers so far: (chunks, stored bytes)."""
    text = urllib.request.urlopen(os.environ["NUAGE_API"] + "/metrics").read().decode()
    values = dict(line.split()[:2] for line in text.splitlines() if line and not line.startswith("#"))
    return int(values["nuage_chunks_written_total"]), int(values["nuage_stored_bytes_written_total"])


_token = []


def api(method, path, body=None):
    """A call of nuage's own /v1 API as the account the keys belong to (NUAGE_ACCOUNT,
    NUAGE_PASSWORD), its JSON answer (None for an empty one)."""
    base = os.environ["NUAGE_API"]
    if not _token:
        login = {"account": os.environ["NUAGE_ACCOUNT"], "password": os.environ["NUAGE_PASSWORD"]}
        req = urllib.request.Request(base + "/v1/login", data=json.dumps(login).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        _token.append(json.load(urllib.request.urlopen(req))["token"])
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": "Bearer " + _token[0], "Content-Type": "application/json"})
    text = urllib.request.urlopen(req).read()
    return json.loads(text) if text else None


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def code(e):
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def b64(digest):
    return base64.b64encode(digest).decode()


class S3Case(unittest.TestCase):
    def setUp(self):
        self.s3 = client()
        self.bucket = "t-" + uuid.uuid4().hex[:12]
        self.s3.create_bucket(Bucket=self.bucket)

    def refused(self, expected, call, *args, **kwargs):
        with self.assertRaises(ClientError) as caught:
            call(*args, **kwargs)
        self.assertEqual(code(caught.exception), expected)
        return caught.exception

    def keys(self):
        out = self.s3.list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in out.get("Contents", [])]


class Buckets(S3Case):
    def test_create_head_list_location_versioning_delete(self):
        names = [b["Name"] for b in self.s3.list_buckets()["Buckets"]]
        self.assertIn(self.bucket, names)
        self.s3.head_bucket(Bucket=self.bucket)
        self.assertIsNone(self.s3.get_bucket_location(Bucket=self.bucket).get("LocationConstraint"))
        self.assertEqual(self.s3.get_bucket_versioning(Bucket=self.bucket)["Status"], "Enabled")
        self.refused(("BucketAlreadyOwnedByYou", 409), self.s3.create_bucket, Bucket=self.bucket)
        self.refused(("InvalidBucketName", 400), self.s3.create_bucket, Bucket="No_Such")
        self.s3.put_object(Bucket=self.bucket, Key="a", Body=b"x")
        self.refused(("BucketNotEmpty", 409), self.s3.delete_bucket, Bucket=self.bucket)
        self.s3.delete_object(Bucket=self.bucket, Key="a")
        self.s3.delete_bucket(Bucket=self.bucket)
        self.refused(("404", 404), self.s3.head_bucket, Bucket=self.bucket)
        self.refused(("NoSuchBucket", 404), self.s3.list_objects_v2, Bucket=self.bucket)


class Objects(S3Case):
    def test_put_get_head_with_metadata_and_content_headers(self):
        body = os.urandom(300_000)
        put = self.s3.put_object(
            Bucket=self.bucket,
            Key="dir/photo.jpg",
            Body=body,
            ContentType="image/jpeg",
            ContentDisposition='attachment; filename="photo.jpg"',
            CacheControl="max-age=60",
            ContentLanguage="fr",
            Metadata={"camera": "x100", "Place": "Lyon"},
        )
        self.assertEqual(put["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
        got = self.s3.get_object(Bucket=self.bucket, Key="dir/photo.jpg")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(got["ETag"], put["ETag"])
        self.assertEqual(got["VersionId"], put["VersionId"])
        self.assertEqual(got["ContentType"], "image/jpeg")
        self.assertEqual(got["ContentDisposition"], 'attachment; filename="photo.jpg"')
        self.assertEqual(got["CacheControl"], "max-age=60")
        self.assertEqual(got["ContentLanguage"], "fr")
        self.assertEqual(got["Metadata"], {"camera": "x100", "place": "Lyon"})
        head = self.s3.head_object(Bucket=self.bucket, Key="dir/photo.jpg")
        self.assertEqual((head["ContentLength"], head["ETag"]), (len(body), put["ETag"]))
        self.assertEqual(head["Metadata"], got["Metadata"])
        # Overrides of a presigned download.
        got = self.s3.get_object(
            Bucket=self.bucket, Key="dir/photo.jpg", ResponseContentType="application/x-test"
        )
        self.assertEqual(got["ContentType"], "application/x-test")
        self.refused(("NoSuchKey", 404), self.s3.get_object, Bucket=self.bucket, Key="nope")
        self.refused(("404", 404), self.s3.head_object, Bucket=self.bucket, Key="nope")

    def test_versions_by_id(self):
        first = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"one")
        second = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"two")
        self.assertNotEqual(first["VersionId"], second["VersionId"])
        old = self.s3.get_object(Bucket=self.bucket, Key="k", VersionId=first["VersionId"])
        self.assertEqual(old["Body"].read(), b"one")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"two")
        self.refused(
            ("InvalidArgument", 400), self.s3.get_object, Bucket=self.bucket, Key="k", VersionId="bogus"
        )

    def test_range_and_conditional_reads(self):
        body = bytes(range(256)) * 1000
        etag = self.s3.put_object(Bucket=self.bucket, Key="r", Body=body)["ETag"]
        part = self.s3.get_object(Bucket=self.bucket, Key="r", Range="bytes=1000-1999")
        self.assertEqual(part["Body"].read(), body[1000:2000])
        self.assertEqual(part["ContentRange"], "bytes 1000-1999/256000")
        self.assertEqual(part["ResponseMetadata"]["HTTPStatusCode"], 206)
        tail = self.s3.get_object(Bucket=self.bucket, Key="r", Range="bytes=-10")
        self.assertEqual(tail["Body"].read(), body[-10:])
        self.refused(("InvalidRange", 416), self.s3.get_object, Bucket=self.bucket, Key="r", Range="bytes=300000-")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="r", IfMatch=etag)["Body"].read(), body)
        self.refused(("PreconditionFailed", 412), self.s3.get_object, Bucket=self.bucket, Key="r", IfMatch='"0000"')
        self.refused(("304", 304), self.s3.get_object, Bucket=self.bucket, Key="r", IfNoneMatch=etag)
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        earlier = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
        self.refused(("304", 304), self.s3.get_object, Bucket=self.bucket, Key="r", IfModifiedSince=later)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="r", IfModifiedSince=earlier)["ContentLength"], 256000)
        self.refused(
            ("PreconditionFailed", 412), self.s3.get_object, Bucket=self.bucket, Key="r", IfUnmodifiedSince=earlier
        )

    def test_delete_and_delete_objects(self):
        for k in ["a", "b", "c", "d/e"]:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=k.encode())
        gone = self.s3.delete_object(Bucket=self.bucket, Key="a")
        self.assertTrue(gone["DeleteMarker"])
        # A key that is not there is deleted all the same, as S3 answers.
        self.s3.delete_object(Bucket=self.bucket, Key="never-was")
        out = self.s3.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": "b"}, {"Key": "d/e"}, {"Key": "zzz"}]}
        )
        self.assertEqual(sorted(d["Key"] for d in out["Deleted"]), ["b", "d/e", "zzz"])
        self.assertEqual(out.get("Errors", []), [])
        self.assertEqual(self.keys(), ["c"])
        quiet = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
        self.assertEqual(quiet.get("Deleted", []), [])
        self.assertEqual(self.keys(), [])

    def test_keys_the_service_refuses_change_nothing(self):
        self.refused(("InvalidArgument", 400), self.s3.put_object, Bucket=self.bucket, Key="a/../b", Body=b"x")
        self.assertEqual(self.keys(), [])


class Versions(S3Case):
    def all_versions(self, **kwargs):
        out = self.s3.list_object_versions(Bucket=self.bucket, **kwargs)
        entries = [(v["Key"], v["VersionId"], v["IsLatest"], "v") for v in out.get("Versions", [])]
        entries += [(m["Key"], m["VersionId"], m["IsLatest"], "m") for m in out.get("DeleteMarkers", [])]
        # Keys in order, each key's newest first (version ids grow).
        return sorted(entries, key=lambda e: (e[0], -int(e[1]))), out

    def test_list_object_versions_with_markers_and_pages(self):
        one = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"one")["VersionId"]
        two = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"two")["VersionId"]
        marker = self.s3.delete_object(Bucket=self.bucket, Key="k")["VersionId"]
        x = self.s3.put_object(Bucket=self.bucket, Key="dir/x", Body=b"x")["VersionId"]
        a = self.s3.put_object(Bucket=self.bucket, Key="a", Body=b"a")["VersionId"]
        entries, out = self.all_versions()
        self.assertEqual(entries, [
            ("a", a, True, "v"), ("dir/x", x, True, "v"),
            ("k", marker, True, "m"), ("k", two, False, "v"), ("k", one, False, "v"),
        ])
        self.assertFalse(out["IsTruncated"])
        sizes = {v["VersionId"]: v["Size"] for v in out["Versions"]}
        self.assertEqual(sizes[one], 3)
        _, top = self.all_versions(Delimiter="/")
        self.assertEqual([p["Prefix"] for p in top["CommonPrefixes"]], ["dir/"])
        # The paginator walks pages of one entry with the key and version markers.
        pages = self.s3.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Delimiter="/", PaginationConfig={"PageSize": 1})
        walked = []
        for page in pages:
            walked += [v["VersionId"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            walked += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        self.assertEqual(walked, [a, "dir/", marker, two, one])
        # Markers given by hand: after version `two` of k comes `one`.
        _, rest = self.all_versions(KeyMarker="k", VersionIdMarker=two)
        self.assertEqual([v["VersionId"] for v in rest["Versions"]], [one])
        self.assertEqual(self.all_versions(KeyMarker="k")[0], [])
        self.refused(("InvalidArgument", 400), self.s3.list_object_versions, Bucket=self.bucket, VersionIdMarker=two)
        self.refused(("NoSuchBucket", 404), self.s3.list_object_versions, Bucket="no-such-" + self.bucket)

    def test_delete_one_version_for_good(self):
        one = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"one")["VersionId"]
        two = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"two")["VersionId"]
        # An old version goes; the key still reads as it did.
        gone = self.s3.delete_object(Bucket=self.bucket, Key="k", VersionId=one)
        self.assertEqual(gone["VersionId"], one)
        self.assertNotIn("DeleteMarker", gone)
        self.refused(("NoSuchKey", 404), self.s3.get_object, Bucket=self.bucket, Key="k", VersionId=one)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"two")
        # Removing the delete marker undeletes the key.
        marker = self.s3.delete_object(Bucket=self.bucket, Key="k")["VersionId"]
        self.assertEqual(self.keys(), [])
        undone = self.s3.delete_object(Bucket=self.bucket, Key="k", VersionId=marker)
        self.assertTrue(undone["DeleteMarker"])
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"two")
        # A version that is not there is answered as deleted, and changes nothing.
        self.s3.delete_object(Bucket=self.bucket, Key="k", VersionId=one)
        self.assertEqual(self.keys(), ["k"])
        self.refused(("InvalidArgument", 400), self.s3.delete_object, Bucket=self.bucket, Key="k", VersionId="bogus")
        # DeleteObjects by version; the last version gone, the key is gone with no marker.
        out = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "k", "VersionId": two}]})
        self.assertEqual([(d["Key"], d["VersionId"]) for d in out["Deleted"]], [("k", two)])
        self.assertEqual(self.all_versions()[0], [])
        self.s3.delete_bucket(Bucket=self.bucket)

    def test_deleting_versions_gives_the_room_back(self):
        body = os.urandom(300_000)
        first = self.s3.put_object(Bucket=self.bucket, Key="big", Body=body)["VersionId"]
        self.s3.put_object(Bucket=self.bucket, Key="big", Body=os.urandom(300_000))
        before = api("GET", "/v1/account")["used_bytes"]
        self.s3.delete_object(Bucket=self.bucket, Key="big", VersionId=first)
        self.assertLess(api("GET", "/v1/account")["used_bytes"], before - 290_000)

    def test_suspended_versioning_keeps_one(self):
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"one")
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Suspended"})
        self.assertEqual(self.s3.get_bucket_versioning(Bucket=self.bucket)["Status"], "Suspended")
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"two")
        entries, _ = self.all_versions()
        self.assertEqual(len(entries), 1)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"two")
        # A delete then keeps only its marker: the content is gone.
        self.s3.delete_object(Bucket=self.bucket, Key="k")
        self.assertEqual([e[3] for e in self.all_versions()[0]], ["m"])
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self.assertEqual(self.s3.get_bucket_versioning(Bucket=self.bucket)["Status"], "Enabled")
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"three")
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"four")
        self.assertEqual(len(self.all_versions()[0]), 3)
        self.refused(
            ("MalformedXML", 400), self.s3.put_bucket_versioning, Bucket=self.bucket,
            VersioningConfiguration={"Status": "Sometimes"},
        )
        ro = client("NUAGE_S3_RO_KEY", "NUAGE_S3_RO_SECRET")
        self.refused(
            ("AccessDenied", 403), ro.put_bucket_versioning, Bucket=self.bucket,
            VersioningConfiguration={"Status": "Suspended"},
        )
        self.assertEqual(self.s3.get_bucket_versioning(Bucket=self.bucket)["Status"], "Enabled")

    def test_get_object_attributes(self):
        body = b"attributes" * 1000
        put = self.s3.put_object(Bucket=self.bucket, Key="k", Body=body, ChecksumAlgorithm="SHA256")
        got = self.s3.get_object_attributes(
            Bucket=self.bucket, Key="k", ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "Checksum"])
        # S3 sends this ETag unquoted; s3s quotes it, as in every other answer.
        self.assertEqual(got["ETag"].strip('"'), put["ETag"].strip('"'))
        self.assertEqual(got["ObjectSize"], len(body))
        self.assertEqual(got["StorageClass"], "STANDARD")
        self.assertEqual(got["Checksum"]["ChecksumSHA256"], b64(hashlib.sha256(body).digest()))
        self.assertEqual(got["VersionId"], put["VersionId"])
        only_size = self.s3.get_object_attributes(Bucket=self.bucket, Key="k", ObjectAttributes=["ObjectSize"])
        self.assertNotIn("ETag", only_size)
        self.refused(
            ("NoSuchKey", 404), self.s3.get_object_attributes, Bucket=self.bucket, Key="nope",
            ObjectAttributes=["ETag"],
        )


class Cors(S3Case):
    RULES = {"CORSRules": [
        {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["PUT", "GET"],
         "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
    ]}

    def preflight(self, url, origin, method, headers=""):
        req = urllib.request.Request(url, method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.headers

    def test_rules_set_read_and_removed(self):
        self.refused(("NoSuchCORSConfiguration", 404), self.s3.get_bucket_cors, Bucket=self.bucket)
        self.s3.put_bucket_cors(Bucket=self.bucket, CORSConfiguration=self.RULES)
        rules = self.s3.get_bucket_cors(Bucket=self.bucket)["CORSRules"]
        self.assertEqual(rules[0]["AllowedOrigins"], ["https://app.example"])
        self.assertEqual(rules[0]["MaxAgeSeconds"], 600)
        self.assertEqual(rules[1]["AllowedMethods"], ["GET"])
        bad = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]}
        self.refused(("InvalidArgument", 400), self.s3.put_bucket_cors, Bucket=self.bucket, CORSConfiguration=bad)
        self.assertEqual(len(self.s3.get_bucket_cors(Bucket=self.bucket)["CORSRules"]), 2, "a refusal changes nothing")
        ro = client("NUAGE_S3_RO_KEY", "NUAGE_S3_RO_SECRET")
        self.refused(("AccessDenied", 403), ro.delete_bucket_cors, Bucket=self.bucket)
        self.s3.delete_bucket_cors(Bucket=self.bucket)
        self.refused(("NoSuchCORSConfiguration", 404), self.s3.get_bucket_cors, Bucket=self.bucket)

    def test_preflight_and_answers_carry_the_rule(self):
        url = f"{ENDPOINT}/{self.bucket}/photo.jpg"
        # No rules: a browser may not.
        self.assertEqual(self.preflight(url, "https://app.example", "PUT")[0], 403)
        self.s3.put_bucket_cors(Bucket=self.bucket, CORSConfiguration=self.RULES)
        status, h = self.preflight(url, "https://app.example", "PUT", "Content-Type, X-Amz-Date")
        self.assertEqual(status, 200)
        self.assertEqual(h["Access-Control-Allow-Origin"], "https://app.example")
        self.assertEqual(h["Access-Control-Allow-Credentials"], "true")
        self.assertEqual(h["Access-Control-Allow-Methods"], "PUT, GET")
        self.assertEqual(h["Access-Control-Allow-Headers"], "content-type, x-amz-date")
        self.assertEqual(h["Access-Control-Max-Age"], "600")
        self.assertEqual(self.preflight(url, "https://app.example", "DELETE")[0], 403)
        self.assertEqual(self.preflight(url, "https://app.example", "PUT", "authorization")[0], 403)
        self.assertEqual(self.preflight(url, "https://evil.example", "PUT")[0], 403)
        status, h = self.preflight(url, "https://evil.example", "GET")
        self.assertEqual((status, h["Access-Control-Allow-Origin"]), (200, "*"))
        self.assertIsNone(h["Access-Control-Allow-Credentials"])
        # A presigned PUT's preflight finds the bucket by the key it names (SigV4: SigV2
        # would sign the Content-Type a browser sends).
        v4 = client(signature_version="s3v4")
        put_url = v4.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": "photo.jpg"}, ExpiresIn=300)
        self.assertEqual(self.preflight(put_url, "https://app.example", "PUT", "content-type")[0], 200)
        # The request itself: its answer says who may read it, and what.
        req = urllib.request.Request(put_url, data=b"jpeg bytes", method="PUT",
                                     headers={"Origin": "https://app.example", "Content-Type": "image/jpeg"})
        with urllib.request.urlopen(req) as r:
            self.assertEqual(r.headers["Access-Control-Allow-Origin"], "https://app.example")
            self.assertEqual(r.headers["Access-Control-Expose-Headers"], "ETag")
            self.assertIn("Origin", r.headers.get_all("Vary"))
        get_url = v4.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": "photo.jpg"}, ExpiresIn=300)
        req = urllib.request.Request(get_url, headers={"Origin": "https://evil.example"})
        with urllib.request.urlopen(req) as r:
            self.assertEqual((r.read(), r.headers["Access-Control-Allow-Origin"]), (b"jpeg bytes", "*"))
        # No rule for the origin and method: the answer has no CORS header (the browser hides it).
        req = urllib.request.Request(put_url, data=b"x", method="PUT", headers={"Origin": "https://evil.example"})
        with urllib.request.urlopen(req) as r:
            self.assertIsNone(r.headers["Access-Control-Allow-Origin"])
            self.assertIn("Origin", r.headers.get_all("Vary"))
        # A preflight for a bucket that is not there is refused.
        self.assertEqual(self.preflight(f"{ENDPOINT}/no-such-{self.bucket}/k", "https://app.example", "GET")[0], 403)


class Lifecycle(S3Case):
    def test_rules_set_read_refused_and_removed(self):
        self.refused(("NoSuchLifecycleConfiguration", 404), self.s3.get_bucket_lifecycle_configuration, Bucket=self.bucket)
        rules = [
            {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
             "Expiration": {"Days": 30}, "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
            {"ID": "markers", "Status": "Disabled", "Filter": {"Prefix": ""},
             "Expiration": {"ExpiredObjectDeleteMarker": True}},
            {"ID": "dated", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
             "Expiration": {"Date": datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)}},
        ]
        self.s3.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})
        got = self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        self.assertEqual([r["ID"] for r in got], ["logs", "markers", "dated"])
        self.assertEqual(got[0]["Filter"]["Prefix"], "logs/")
        self.assertEqual(got[0]["Expiration"]["Days"], 30)
        self.assertEqual(got[0]["NoncurrentVersionExpiration"], {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2})
        self.assertEqual(got[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"], 3)
        self.assertEqual(got[1]["Status"], "Disabled")
        self.assertTrue(got[1]["Expiration"]["ExpiredObjectDeleteMarker"])
        self.assertEqual(got[2]["Expiration"]["Date"].year, 2030)
        refusals = [
            (("NotImplemented", 501), {"ID": "t", "Status": "Enabled", "Filter": {"Prefix": ""},
                                         "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}),
            (("NotImplemented", 501), {"ID": "t", "Status": "Enabled", "Filter": {"Tag": {"Key": "a", "Value": "b"}},
                                         "Expiration": {"Days": 1}}),
            (("InvalidArgument", 400), {"ID": "t", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 0}}),
            (("InvalidArgument", 400), {"ID": "t", "Status": "Enabled", "Filter": {"Prefix": ""},
                                          "Expiration": {"Date": datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.timezone.utc)}}),
        ]
        for expected, rule in refusals:
            self.refused(expected, self.s3.put_bucket_lifecycle_configuration, Bucket=self.bucket,
                         LifecycleConfiguration={"Rules": [rule]})
        self.assertEqual(len(self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]), 3,
                         "a refusal changes nothing")
        ro = client("NUAGE_S3_RO_KEY", "NUAGE_S3_RO_SECRET")
        self.assertEqual(len(ro.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]), 3)
        self.refused(("AccessDenied", 403), ro.delete_bucket_lifecycle, Bucket=self.bucket)
        self.s3.delete_bucket_lifecycle(Bucket=self.bucket)
        self.refused(("NoSuchLifecycleConfiguration", 404), self.s3.get_bucket_lifecycle_configuration, Bucket=self.bucket)


class Checksums(S3Case):
    ALGORITHMS = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]

    def test_each_algorithm_is_checked_on_write_and_returned_on_read(self):
        body = os.urandom(100_000)
        for algorithm in self.ALGORITHMS:
            put = self.s3.put_object(Bucket=self.bucket, Key=algorithm, Body=body, ChecksumAlgorithm=algorithm)
            self.assertIn("Checksum" + algorithm, put)
            got = self.s3.get_object(Bucket=self.bucket, Key=algorithm, ChecksumMode="ENABLED")
            self.assertEqual(got["Body"].read(), body)
            self.assertEqual(got["Checksum" + algorithm], put["Checksum" + algorithm])
        self.assertEqual(
            self.s3.head_object(Bucket=self.bucket, Key="CRC32", ChecksumMode="ENABLED")["ChecksumCRC32"],
            b64(zlib.crc32(body).to_bytes(4, "big")),
        )
        sha = self.s3.head_object(Bucket=self.bucket, Key="SHA256", ChecksumMode="ENABLED")["ChecksumSHA256"]
        self.assertEqual(sha, b64(hashlib.sha256(body).digest()))

    def test_a_wrong_digest_is_refused_and_changes_nothing(self):
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"kept")
        wrong_crc = b64((zlib.crc32(b"other") ).to_bytes(4, "big"))
        self.refused(
            ("BadDigest", 400), self.s3.put_object, Bucket=self.bucket, Key="k", Body=b"new", ChecksumCRC32=wrong_crc
        )
        wrong_md5 = b64(hashlib.md5(b"other").digest())
        self.refused(("BadDigest", 400), self.s3.put_object, Bucket=self.bucket, Key="k", Body=b"new", ContentMD5=wrong_md5)
        self.refused(
            ("InvalidDigest", 400), self.s3.put_object, Bucket=self.bucket, Key="k", Body=b"new", ContentMD5="bm90"
        )
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"kept")
        right_md5 = b64(hashlib.md5(b"new").digest())
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"new", ContentMD5=right_md5)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"new")

    def test_checksum_trailers_of_unsigned_and_signed_streams(self):
        # The SDK's default since 2025: aws-chunked bodies with a checksum trailer.
        for signed in [False, True]:
            s3 = client(request_checksum_calculation="when_supported", s3={"payload_signing_enabled": signed})
            body = os.urandom(3_000_000)
            s3.upload_fileobj(io.BytesIO(body), self.bucket, "trailer-%s" % signed)
            got = s3.get_object(Bucket=self.bucket, Key="trailer-%s" % signed)
            self.assertEqual(got["Body"].read(), body)


class ConditionalWrites(S3Case):
    def test_if_none_match_star_lets_exactly_one_of_racing_writers_win(self):
        outcomes = []
        barrier = threading.Barrier(8)

        def writer(n):
            s3 = client()
            barrier.wait()
            try:
                s3.put_object(Bucket=self.bucket, Key="lock", Body=b"writer %d" % n, IfNoneMatch="*")
                outcomes.append(("won", n))
            except ClientError as e:
                outcomes.append((code(e), n))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [n for what, n in outcomes if what == "won"]
        self.assertEqual(len(winners), 1, outcomes)
        self.assertEqual(sorted(w for w, _ in outcomes if w != "won"), [("PreconditionFailed", 412)] * 7)
        body = self.s3.get_object(Bucket=self.bucket, Key="lock")["Body"].read()
        self.assertEqual(body, b"writer %d" % winners[0])

    def test_if_match_on_put(self):
        etag = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"v1")["ETag"]
        self.refused(("PreconditionFailed", 412), self.s3.put_object, Bucket=self.bucket, Key="k", Body=b"v2", IfMatch='"00"')
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"v2", IfMatch=etag)
        self.refused(("PreconditionFailed", 412), self.s3.put_object, Bucket=self.bucket, Key="k", Body=b"v3", IfMatch=etag)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"v2")


MIB = 1 << 20


class Multipart(S3Case):
    def start(self, key="big.bin", **kwargs):
        return self.s3.create_multipart_upload(Bucket=self.bucket, Key=key, **kwargs)["UploadId"]

    def part(self, key, upload, number, body, **kwargs):
        return self.s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=body, **kwargs
        )["ETag"]

    def complete(self, key, upload, parts, **kwargs):
        return self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": t} for n, t in parts]},
            **kwargs,
        )

    def test_three_parts_sent_out_of_order_join_into_one_version(self):
        bodies = [os.urandom(5 * MIB + 1), os.urandom(5 * MIB), os.urandom(123)]
        upload = self.start(ContentType="application/x-test", Metadata={"origin": "parts"})
        # Sent 3, 1, 2; part 1 sent twice (the second one counts).
        tags = {}
        tags[3] = self.part("big.bin", upload, 3, bodies[2])
        self.part("big.bin", upload, 1, os.urandom(5 * MIB))
        tags[1] = self.part("big.bin", upload, 1, bodies[0])
        tags[2] = self.part("big.bin", upload, 2, bodies[1])
        for n in (1, 2, 3):
            self.assertEqual(tags[n], '"%s"' % hashlib.md5(bodies[n - 1]).hexdigest())
        listed = self.s3.list_parts(Bucket=self.bucket, Key="big.bin", UploadId=upload)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in listed],
                         [(n, tags[n], len(bodies[n - 1])) for n in (1, 2, 3)])
        page = self.s3.list_parts(Bucket=self.bucket, Key="big.bin", UploadId=upload, MaxParts=2)
        self.assertTrue(page["IsTruncated"])
        self.assertEqual(page["NextPartNumberMarker"], 2)
        rest = self.s3.list_parts(Bucket=self.bucket, Key="big.bin", UploadId=upload, PartNumberMarker=2)
        self.assertEqual([p["PartNumber"] for p in rest["Parts"]], [3])
        uploads = self.s3.list_multipart_uploads(Bucket=self.bucket)["Uploads"]
        self.assertEqual([(u["Key"], u["UploadId"]) for u in uploads], [("big.bin", upload)])

        done = self.complete("big.bin", upload, [(n, tags[n]) for n in (1, 2, 3)])
        whole = b"".join(bodies)
        digests = b"".join(hashlib.md5(b).digest() for b in bodies)
        expected = '"%s-3"' % hashlib.md5(digests).hexdigest()
        self.assertEqual(done["ETag"], expected)
        got = self.s3.get_object(Bucket=self.bucket, Key="big.bin")
        self.assertEqual(got["Body"].read(), whole)
        self.assertEqual(got["ETag"], expected)
        self.assertEqual(got["ContentType"], "application/x-test")
        self.assertEqual(got["Metadata"], {"origin": "parts"})
        self.assertEqual(got["VersionId"], done["VersionId"])
        # A range across the parts' seam, and the tag as a condition.
        seam = 5 * MIB + 1
        r = self.s3.get_object(Bucket=self.bucket, Key="big.bin", Range="bytes=%d-%d" % (seam - 3, seam + 2),
                               IfMatch=expected)
        self.assertEqual(r["Body"].read(), whole[seam - 3:seam + 3])
        # The upload is gone; completing it again answers as the first completion did.
        self.refused(("NoSuchUpload", 404), self.s3.list_parts, Bucket=self.bucket, Key="big.bin", UploadId=upload)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []), [])
        again = self.complete("big.bin", upload, [(n, tags[n]) for n in (1, 2, 3)])
        self.assertEqual((again["ETag"], again["VersionId"]), (expected, done["VersionId"]))
        self.refused(("NoSuchUpload", 404), self.part, "big.bin", upload, 4, b"late")

    def test_abort_ends_the_upload_and_changes_nothing(self):
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"before")
        upload = self.start("k")
        tag = self.part("k", upload, 1, os.urandom(MIB))
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key="k", UploadId=upload)
        self.refused(("NoSuchUpload", 404), self.complete, "k", upload, [(1, tag)])
        self.refused(("NoSuchUpload", 404), self.part, "k", upload, 2, b"x")
        self.refused(("NoSuchUpload", 404), self.s3.abort_multipart_upload,
                     Bucket=self.bucket, Key="k", UploadId=upload)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"before")
        self.refused(("NoSuchUpload", 404), self.s3.list_parts, Bucket=self.bucket, Key="k", UploadId="mp_nope")
        # An upload id is bound to its key.
        other = self.start("k2")
        self.refused(("NoSuchUpload", 404), self.part, "k", other, 1, b"x")

    def test_bad_completions_are_refused_and_change_nothing(self):
        upload = self.start("k")
        small = self.part("k", upload, 1, b"small")
        last = self.part("k", upload, 2, b"last")
        self.refused(("EntityTooSmall", 400), self.complete, "k", upload, [(1, small), (2, last)])
        self.refused(("InvalidPartOrder", 400), self.complete, "k", upload, [(2, last), (1, small)])
        self.refused(("InvalidPart", 400), self.complete, "k", upload, [(1, last)])
        self.refused(("InvalidPart", 400), self.complete, "k", upload, [(3, last)])
        self.refused(("InvalidArgument", 400), self.part, "k", upload, 0, b"x")
        self.refused(("InvalidArgument", 400), self.part, "k", upload, 10001, b"x")
        self.refused(("BadDigest", 400), self.part, "k", upload, 3, b"x",
                     ContentMD5=b64(hashlib.md5(b"y").digest()))
        self.refused(("NoSuchKey", 404), self.s3.get_object, Bucket=self.bucket, Key="k")
        # Still complete-able with a valid choice: one part is its own last.
        done = self.complete("k", upload, [(2, last)])
        self.assertEqual(done["ETag"], '"%s-1"' % hashlib.md5(hashlib.md5(b"last").digest()).hexdigest())
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"last")

    def test_conditional_completion(self):
        first = self.start("k")
        tag = self.part("k", first, 1, b"one")
        second = self.start("k")
        tag2 = self.part("k", second, 1, b"two")
        self.complete("k", first, [(1, tag)], IfNoneMatch="*")
        self.refused(("PreconditionFailed", 412), self.complete, "k", second, [(1, tag2)], IfNoneMatch="*")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"one")
        current = self.s3.head_object(Bucket=self.bucket, Key="k")["ETag"]
        self.complete("k", second, [(1, tag2)], IfMatch=current)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"two")

    def test_part_checksums_are_checked_and_returned(self):
        upload = self.start("k", ChecksumAlgorithm="SHA256")
        body = os.urandom(1000)
        sha = b64(hashlib.sha256(body).digest())
        r = self.s3.upload_part(Bucket=self.bucket, Key="k", UploadId=upload, PartNumber=1, Body=body,
                                ChecksumSHA256=sha)
        self.assertEqual(r["ChecksumSHA256"], sha)
        self.refused(("BadDigest", 400), self.s3.upload_part, Bucket=self.bucket, Key="k", UploadId=upload,
                     PartNumber=2, Body=body, ChecksumSHA256=b64(hashlib.sha256(b"other").digest()))
        self.assertEqual([p["PartNumber"] for p in
                          self.s3.list_parts(Bucket=self.bucket, Key="k", UploadId=upload)["Parts"]], [1])


class Copies(S3Case):
    def test_copy_object_moves_no_byte_and_keeps_or_replaces_metadata(self):
        body = os.urandom(3 * MIB)
        first = self.s3.put_object(Bucket=self.bucket, Key="src", Body=body, ContentType="text/x-a",
                                   Metadata={"m": "1"})
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"second")
        other = self.bucket + "-b"
        self.s3.create_bucket(Bucket=other)
        before = written()
        # The first version, by id, into another bucket: its metadata comes along.
        r = self.s3.copy_object(Bucket=other, Key="dst", CopySource={
            "Bucket": self.bucket, "Key": "src", "VersionId": first["VersionId"]})
        self.assertEqual(r["CopySourceVersionId"], first["VersionId"])
        self.assertEqual(r["CopyObjectResult"]["ETag"], first["ETag"])
        got = self.s3.get_object(Bucket=other, Key="dst")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual((got["ContentType"], got["Metadata"]), ("text/x-a", {"m": "1"}))
        # The current version, metadata replaced.
        self.s3.copy_object(Bucket=self.bucket, Key="dst2", CopySource="%s/src" % self.bucket,
                            MetadataDirective="REPLACE", ContentType="text/x-b", Metadata={"n": "2"})
        got = self.s3.get_object(Bucket=self.bucket, Key="dst2")
        self.assertEqual(got["Body"].read(), b"second")
        self.assertEqual((got["ContentType"], got["Metadata"]), ("text/x-b", {"n": "2"}))
        self.assertEqual(written(), before, "a copy wrote chunks")
        # Conditions on the source, and a copy onto itself that changes nothing.
        self.refused(("PreconditionFailed", 412), self.s3.copy_object, Bucket=self.bucket, Key="dst3",
                     CopySource="%s/src" % self.bucket, CopySourceIfMatch=first["ETag"])
        self.refused(("PreconditionFailed", 412), self.s3.copy_object, Bucket=self.bucket, Key="dst3",
                     CopySource="%s/src" % self.bucket, CopySourceIfNoneMatch="*")
        self.refused(("InvalidRequest", 400), self.s3.copy_object, Bucket=self.bucket, Key="src",
                     CopySource="%s/src" % self.bucket)
        self.refused(("NoSuchKey", 404), self.s3.copy_object, Bucket=self.bucket, Key="dst3",
                     CopySource="%s/missing" % self.bucket)
        self.refused(("NoSuchBucket", 404), self.s3.copy_object, Bucket=self.bucket, Key="dst3",
                     CopySource="no-such-bucket-here/src")
        self.refused(("NoSuchKey", 404), self.s3.get_object, Bucket=self.bucket, Key="dst3")
        # The target's own conditions.
        self.refused(("PreconditionFailed", 412), self.s3.copy_object, Bucket=self.bucket, Key="dst2",
                     CopySource="%s/src" % self.bucket, IfNoneMatch="*")

    def test_upload_part_copy_of_a_whole_object_moves_no_byte(self):
        head = os.urandom(6 * MIB)
        self.s3.put_object(Bucket=self.bucket, Key="head", Body=head)
        tail = os.urandom(5 * MIB)
        self.s3.put_object(Bucket=self.bucket, Key="tail", Body=tail)
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key="joined")["UploadId"]
        before = written()
        p1 = self.s3.upload_part_copy(Bucket=self.bucket, Key="joined", UploadId=upload, PartNumber=1,
                                      CopySource="%s/head" % self.bucket)["CopyPartResult"]["ETag"]
        p2 = self.s3.upload_part_copy(Bucket=self.bucket, Key="joined", UploadId=upload, PartNumber=2,
                                      CopySource="%s/tail" % self.bucket)["CopyPartResult"]["ETag"]
        self.assertEqual(written(), before, "a whole-object part copy wrote chunks")
        self.assertEqual(p1, '"%s"' % hashlib.md5(head).hexdigest())
        # A range is read and written as a part.
        p3 = self.s3.upload_part_copy(Bucket=self.bucket, Key="joined", UploadId=upload, PartNumber=3,
                                      CopySource="%s/head" % self.bucket,
                                      CopySourceRange="bytes=100-199")["CopyPartResult"]["ETag"]
        self.assertEqual(p3, '"%s"' % hashlib.md5(head[100:200]).hexdigest())
        # Deleting a source after its part was copied loses nothing.
        self.s3.delete_object(Bucket=self.bucket, Key="tail")
        self.s3.complete_multipart_upload(Bucket=self.bucket, Key="joined", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}, {"PartNumber": 3, "ETag": p3}]})
        got = self.s3.get_object(Bucket=self.bucket, Key="joined")["Body"].read()
        self.assertEqual(got, head + tail + head[100:200])
        self.refused(("InvalidRange", 416), self.s3.upload_part_copy, Bucket=self.bucket, Key="joined2",
                     UploadId=self.s3.create_multipart_upload(Bucket=self.bucket, Key="joined2")["UploadId"],
                     PartNumber=1, CopySource="%s/head" % self.bucket, CopySourceRange="bytes=%d-" % (9 * MIB))


class Listing(S3Case):
    def setUp(self):
        super().setUp()
        self.names = ["a.txt", "b/1", "b/2", "b/c/3", "d e+f", "é.txt", "z"]
        for k in self.names:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"x")

    def test_v2_prefix_delimiter_pages_start_after_and_url_encoding(self):
        self.assertEqual(self.keys(), sorted(self.names, key=lambda k: k.encode()))
        top = self.s3.list_objects_v2(Bucket=self.bucket, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in top["CommonPrefixes"]], ["b/"])
        self.assertEqual([o["Key"] for o in top["Contents"]], ["a.txt", "d e+f", "z", "é.txt"])
        under = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="b/", Delimiter="/")
        self.assertEqual([o["Key"] for o in under["Contents"]], ["b/1", "b/2"])
        self.assertEqual([p["Prefix"] for p in under["CommonPrefixes"]], ["b/c/"])
        seen = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, PaginationConfig={"PageSize": 2}):
            self.assertLessEqual(page["KeyCount"], 2)
            seen += [o["Key"] for o in page.get("Contents", [])]
        self.assertEqual(seen, sorted(self.names, key=lambda k: k.encode()))
        after = self.s3.list_objects_v2(Bucket=self.bucket, StartAfter="b/2")
        self.assertEqual([o["Key"] for o in after["Contents"]], ["b/c/3", "d e+f", "z", "é.txt"])
        raw = client().list_objects_v2(Bucket=self.bucket, EncodingType="url", Prefix="d")
        # Asked for by the caller, the encoding is left for it to undo.
        self.assertEqual([o["Key"] for o in raw["Contents"]], ["d%20e%2Bf"])
        empty = self.s3.list_objects_v2(Bucket=self.bucket, MaxKeys=0)
        self.assertEqual(empty["KeyCount"], 0)
        for bad in [{"StartAfter": "a\x00"}, {"Prefix": "\x00"}, {"ContinuationToken": "00"}]:
            self.refused(("InvalidArgument", 400), self.s3.list_objects_v2, Bucket=self.bucket, **bad)

    def test_v1_markers(self):
        seen = []
        for page in self.s3.get_paginator("list_objects").paginate(Bucket=self.bucket, PaginationConfig={"PageSize": 3}):
            seen += [o["Key"] for o in page.get("Contents", [])]
        self.assertEqual(seen, sorted(self.names, key=lambda k: k.encode()))
        # A marker that is a common prefix skips every key under it.
        pages = list(
            self.s3.get_paginator("list_objects").paginate(
                Bucket=self.bucket, Delimiter="/", PaginationConfig={"PageSize": 1}
            )
        )
        entries = []
        for p in pages:
            entries += [o["Key"] for o in p.get("Contents", [])] + [c["Prefix"] for c in p.get("CommonPrefixes", [])]
        self.assertEqual(entries, ["a.txt", "b/", "d e+f", "z", "é.txt"])


class Access(S3Case):
    def test_bad_signatures_unknown_keys_and_unsigned_requests_are_refused(self):
        wrong = boto3.client(
            "s3",
            endpoint_url=ENDPOINT,
            aws_access_key_id=os.environ["NUAGE_S3_KEY"],
            aws_secret_access_key="not-the-secret-at-all-0000000000000000",
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        self.refused(("SignatureDoesNotMatch", 403), wrong.put_object, Bucket=self.bucket, Key="k", Body=b"x")
        unknown = boto3.client(
            "s3",
            endpoint_url=ENDPOINT,
            aws_access_key_id="NUAAAAAAAAAAAAAAAAAA",
            aws_secret_access_key="whatever",
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        self.refused(("InvalidAccessKeyId", 403), unknown.list_buckets)
        anonymous = boto3.client(
            "s3", endpoint_url=ENDPOINT, region_name="us-east-1", config=Config(signature_version=botocore.UNSIGNED)
        )
        self.refused(("AccessDenied", 403), anonymous.list_objects_v2, Bucket=self.bucket)
        self.assertEqual(self.keys(), [])

    def test_clock_skew_is_refused(self):
        url = "%s/%s/k" % (ENDPOINT, self.bucket)
        with urllib.request.urlopen(signed("PUT", url, utc_now(), body=b"x")) as r:
            self.assertEqual(r.status, 200)
        self.s3.delete_object(Bucket=self.bucket, Key="k")
        for minutes in [-20, 20]:
            skewed = signed("PUT", url, utc_now() + datetime.timedelta(minutes=minutes), body=b"x")
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(skewed)
            self.assertEqual(caught.exception.code, 403)
            self.assertIn(b"<Code>RequestTimeTooSkewed</Code>", caught.exception.read())
        self.assertEqual(self.keys(), [])

    def test_sigv2_header_signatures_and_form_uploads_are_refused_before_their_body(self):
        # SigV2 in a header has no date a server can bound: a captured request would replay.
        creds = Credentials(os.environ["NUAGE_S3_KEY"], os.environ["NUAGE_S3_SECRET"])
        request = AWSRequest(method="PUT", url="%s/%s/v2" % (ENDPOINT, self.bucket), data=b"x")
        HmacV1Auth(creds).add_auth(request)
        prepared = request.prepare()
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(prepared.url, data=b"x", method="PUT", headers=dict(prepared.headers)))
        self.assertEqual(caught.exception.code, 403)
        self.assertIn(b"<Code>AccessDenied</Code>", caught.exception.read())
        post = self.s3.generate_presigned_post(self.bucket, "form")
        boundary = "nuage-test-boundary"
        parts = [
            '--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, k, v)
            for k, v in post["fields"].items()
        ]
        body = "".join(parts).encode() + (
            '--%s\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n' % boundary
        ).encode() + b"data\r\n--" + boundary.encode() + b"--\r\n"
        form = urllib.request.Request(
            post["url"], data=body, method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + boundary}
        )
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(form)
        self.assertEqual(caught.exception.code, 501)
        self.assertEqual(self.keys(), [])

    def test_read_only_and_bucket_scoped_keys(self):
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        ro = client("NUAGE_S3_RO_KEY", "NUAGE_S3_RO_SECRET")
        self.assertEqual(ro.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"x")
        self.refused(("AccessDenied", 403), ro.put_object, Bucket=self.bucket, Key="k", Body=b"y")
        self.refused(("AccessDenied", 403), ro.delete_object, Bucket=self.bucket, Key="k")
        self.refused(("AccessDenied", 403), ro.create_bucket, Bucket="t-ro-" + uuid.uuid4().hex[:8])
        scoped = client("NUAGE_S3_SCOPED_KEY", "NUAGE_S3_SCOPED_SECRET")
        only = os.environ["NUAGE_S3_SCOPED_BUCKET"]
        scoped.put_object(Bucket=only, Key="mine", Body=b"ok")
        self.assertEqual([b["Name"] for b in scoped.list_buckets()["Buckets"]], [only])
        self.refused(("AccessDenied", 403), scoped.get_object, Bucket=self.bucket, Key="k")
        self.refused(("AccessDenied", 403), scoped.list_objects_v2, Bucket=self.bucket)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"x")


class Presigned(S3Case):
    def test_get_and_put_urls_and_their_expiry(self):
        # SigV4 query signatures (what aws-cli's presign makes); boto3's default for S3 is
        # still SigV2's, which the GET below uses.
        v4 = client(signature_version="s3v4")
        put_url = v4.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": "up"}, ExpiresIn=300
        )
        req = urllib.request.Request(
            put_url, data=b"from a browser", method="PUT", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(req) as r:
            self.assertEqual(r.status, 200)
        get_url = self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "up"}, ExpiresIn=300)
        with urllib.request.urlopen(get_url) as r:
            self.assertEqual(r.read(), b"from a browser")
        # Signed an hour ago for 60 seconds: expired.
        url = "%s/%s/up" % (ENDPOINT, self.bucket)
        expired = signed("GET", url, utc_now() - datetime.timedelta(hours=1), presign_for=60)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(expired)
        self.assertEqual(caught.exception.code, 403)
        self.assertIn(b"AccessDenied", caught.exception.read())
        with urllib.request.urlopen(signed("GET", url, utc_now(), presign_for=60)) as r:
            self.assertEqual(r.read(), b"from a browser")
        # A URL whose signature was tampered with.
        tampered = get_url.replace("Key=up", "Key=up2") if "Key=up" in get_url else get_url[:-4] + "0000"
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(tampered)
        self.assertEqual(caught.exception.code, 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
