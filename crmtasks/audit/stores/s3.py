"""Archives in an S3-compatible object store: ``s3://bucket/prefix`` (AWS S3, MinIO, Ceph, moto...).

boto3 finds credentials the standard way (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, an instance role);
CRMTASKS_S3_ENDPOINT_URL points it at a server other than AWS. crmtasks
never reads or prints a credential itself, and botocore's messages carry
none.

Uploads stream: a data object goes up as a multipart upload in parts of
CRMTASKS_S3_PART_MB, so at most one part is held in memory. The object
exists under its temporary key only once the upload is completed; a killed
or failed upload leaves an incomplete multipart upload, which the next
writer of the same key aborts (and a bucket lifecycle rule can expire).
``publish`` is a server-side copy to the final key, then the temporary key
is deleted. Checksums of the content are crmtasks' own (the manifest's
SHA-256s, checked by reading the object back), so requests only carry the
checksums the server requires: stores that do not know the newer AWS
checksum headers work too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import boto3
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from crmtasks.audit.stores.base import (
    BLOCK,
    TEMP_PREFIX,
    ObjectMissing,
    StoreError,
    temporary_name,
)

_FAILURES = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, urllib3.exceptions.HTTPError,
             OSError)
_MISSING_CODES = ("404", "NoSuchKey", "NotFound")


def _reason(error: BaseException) -> str:
    """One line saying why a request failed (botocore's messages name the operation and the server's code)."""
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    return " ".join(str(error).split()) or type(error).__name__


def _missing(error: BaseException) -> bool:
    return (isinstance(error, botocore.exceptions.ClientError)
            and str(error.response.get("Error", {}).get("Code")) in _MISSING_CODES)


class S3Writer:
    """One object streamed to its temporary key as a multipart upload (a single PUT when it is small).

    Parameters:
      store(S3Store): The store.
      key(str): The temporary key.
      on_part(callable|None): Called with the number of parts uploaded so far, after each part.
    """

    def __init__(self, store: S3Store, key: str, on_part: Callable[[int], None] | None) -> None:
        self._store, self._key, self._on_part = store, key, on_part
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        store.abort_uploads(key)  # what a killed run left under this key

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= self._store.part_size:
            self._send_part()
        return len(data)

    def _send_part(self) -> None:
        store = self._store
        with store.failing(f"upload of {self._key}"):
            if self._upload_id is None:
                self._upload_id = store.client.create_multipart_upload(Bucket=store.bucket, Key=self._key)["UploadId"]
            number = len(self._parts) + 1
            answer = store.client.upload_part(Bucket=store.bucket, Key=self._key, UploadId=self._upload_id,
                                              PartNumber=number, Body=bytes(self._buffer))
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._buffer.clear()
        if self._on_part is not None:
            self._on_part(number)

    def commit(self) -> None:
        store = self._store
        if self._upload_id is None:
            with store.failing(f"upload of {self._key}"):
                store.client.put_object(Bucket=store.bucket, Key=self._key, Body=bytes(self._buffer))
            if self._on_part is not None:
                self._on_part(1)
            return
        if self._buffer:
            self._send_part()
        with store.failing(f"upload of {self._key}"):
            store.client.complete_multipart_upload(Bucket=store.bucket, Key=self._key, UploadId=self._upload_id,
                                                   MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        if self._upload_id is not None:
            try:
                self._store.client.abort_multipart_upload(Bucket=self._store.bucket, Key=self._key,
                                                          UploadId=self._upload_id)
            except _FAILURES:
                pass  # the store is gone: the next writer of this key aborts it


class S3Store:
    """Archive objects under ``prefix/`` in ``bucket`` of an S3-compatible store.

    Parameters:
      bucket(str): The bucket (it must exist).
      prefix(str): Key prefix without leading or trailing ``/`` ("" for the bucket's root).
      endpoint_url(str|None): The server (CRMTASKS_S3_ENDPOINT_URL); None: AWS.
      part_size(int): Bytes per part of a multipart upload (at least 5 MiB on AWS).
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 part_size: int = 8 << 20) -> None:
        self.bucket, self.prefix, self.part_size = bucket, prefix.strip("/"), part_size
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120,
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    def failing(self, what: str):
        """A context that turns any failure of the store into one StoreError line naming ``what``."""
        return _Failing(self, what)

    def key(self, name: str) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise StoreError(f"{name!r} is not a plain object name in {self.location}")
        return f"{self.prefix}/{name}" if self.prefix else name

    def abort_uploads(self, key: str) -> None:
        """Abort the incomplete multipart uploads of ``key`` (a killed or failed run's)."""
        with self.failing(f"listing the unfinished uploads of {key}"):
            listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            for upload in listing.get("Uploads", []):
                if upload["Key"] == key:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])

    def writer(self, name: str, on_part: Callable[[int], None] | None = None) -> S3Writer:
        return S3Writer(self, self.key(temporary_name(name)), on_part)

    def publish(self, name: str) -> None:
        source, target = self.key(temporary_name(name)), self.key(name)
        with self.failing(f"publishing {target}"):
            self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, target,
                             Config=TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
                                                   use_threads=False))
            self.client.delete_object(Bucket=self.bucket, Key=source)

    def put(self, name: str, data: bytes) -> None:
        with self.failing(f"upload of {self.key(name)}"):
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data)

    def get(self, name: str) -> bytes:
        return b"".join(self.read_blocks(name))

    def read_blocks(self, name: str) -> Iterator[bytes]:
        key = self.key(name)
        with self.failing(f"reading {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                yield from body.iter_chunks(BLOCK)
            finally:
                body.close()

    def size(self, name: str) -> int | None:
        """The object's size in bytes; None when it is missing (StoreError when the store cannot say)."""
        try:
            with self.failing(f"looking up {self.key(name)}"):
                return self.client.head_object(Bucket=self.bucket, Key=self.key(name))["ContentLength"]
        except ObjectMissing:
            return None

    def names(self, suffixes: tuple[str, ...] = ("",), *, temporary: bool = False) -> list[str]:
        """Published (or temporary) object names under the prefix ending in one of ``suffixes``."""
        start = f"{self.prefix}/" if self.prefix else ""
        found = []
        with self.failing(f"listing {self.location}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                found.extend(item["Key"][len(start):] for item in page.get("Contents", []))
        return sorted(name for name in found
                      if "/" not in name and name.endswith(suffixes) and name.startswith(TEMP_PREFIX) == temporary)

    def delete(self, name: str) -> None:
        with self.failing(f"deleting {self.key(name)}"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))


class _Failing:
    """See S3Store.failing: a missing object becomes ObjectMissing, every other failure StoreError."""

    def __init__(self, store: S3Store, what: str) -> None:
        self._store, self._what = store, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or not isinstance(error, _FAILURES):
            return False
        where = self._store.location
        if _missing(error):
            raise ObjectMissing(f"{self._what}: no such object in {where}") from None
        raise StoreError(f"archive store {where}: {self._what} failed: {_reason(error)}") from None
