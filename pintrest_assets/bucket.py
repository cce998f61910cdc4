"""A bucket of objects: a local directory or an S3 bucket (with an optional key prefix).

The gateway's sink writes through it and the S3 mount reads through it, so both work alike on
the embedded default and on S3. Keys are S3 keys ("topics/<topic>/partition=0/..."), listed in
lexicographic order as ListObjectsV2 lists them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from pintrest_assets.files import write_atomically


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


class Bucket(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` whose key sorts after ``start_after``, in key order."""
        ...

    def list_page(self, prefix: str, start_after: str | None = None, max_keys: int = 1000) -> list[ObjectInfo]:
        """At most ``max_keys`` objects of ``list(prefix, start_after)``: one ListObjectsV2 request."""
        ...

    def list_prefixes(self, prefix: str) -> list[str]:
        """The "directories" right under ``prefix`` (which ends in "/"), each ending in "/", in key order."""
        ...


class LocalBucket:
    """A directory standing in for a bucket; a key is a relative path."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} escapes the bucket")
        return path

    def put(self, key: str, data: bytes) -> None:
        # Write then rename: a reader never sees half an object, and a re-upload of the same key
        # replaces it whole, as an S3 PUT does.
        write_atomically(self._path(key), data)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        # Sink keys live in a few deep directories: list only the directories the prefix reaches.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        found: list[tuple[str, os.DirEntry]] = []
        directories = [base]
        while directories:
            directory = directories.pop()
            rel_dir = directory.relative_to(self.root).as_posix()
            subdirs: list[str] = []
            key_prefix = "" if rel_dir == "." else f"{rel_dir}/"
            files = list_directory(directory, key_prefix, prefix=prefix, start_after=start_after, subdirs=subdirs)
            found.extend((key_prefix + entry.name, entry) for entry in files)
            directories.extend(directory / name for name in subdirs)
        found.sort(key=lambda file: file[0])
        for key, entry in found:
            st = entry.stat()
            yield ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_size:x}-{st.st_mtime_ns:x}")

    def list_page(self, prefix: str, start_after: str | None = None, max_keys: int = 1000) -> list[ObjectInfo]:
        return list(itertools.islice(self.list(prefix, start_after), max_keys))

    def list_prefixes(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            f"{prefix}{entry.name}/" for entry in os.scandir(base) if entry.is_dir() and not entry.name.startswith(".")
        )


def list_directory(
    directory: str | os.PathLike,
    key_prefix: str,
    *,
    prefix: str = "",
    start_after: str | None = None,
    subdirs: list[str] | None = None,
) -> list[os.DirEntry]:
    """The files of one directory of a local bucket whose key (``key_prefix`` + name) starts with
    ``prefix`` and sorts after ``start_after``, in the directory's order (a stat in that order is
    faster than in key order); hidden names (files being written) are left out. The names of its
    subdirectories are appended to ``subdirs``.

    A directory listing taken while files are renamed into the directory is no snapshot: POSIX
    leaves the entries added during a readdir unspecified, so it may return a later key and miss
    an earlier one, which a reader going on after the last key it saw would never read. So the
    files are listed twice and only the second listing's keys up to the greatest key of the first
    are kept: the sink makes a partition's keys visible in key order, so all of them were there
    before the second listing began, and readdir returns every entry that is there for the whole
    listing. Greater keys are left for the next listing. Without a new key in the first listing
    there is nothing to bound, and no second one.
    """

    after = start_after or ""

    def new_files(subdirs: list[str] | None) -> Iterator[tuple[str, os.DirEntry]]:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_file():
                    key = key_prefix + entry.name
                    if key > after and key.startswith(prefix):
                        yield key, entry
                elif subdirs is not None and entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)

    bound = max((key for key, _ in new_files(subdirs)), default=None)
    if bound is None:
        return []
    return [entry for key, entry in new_files(None) if key <= bound]


class S3Bucket:
    """An S3 bucket, or a prefix inside one, through a boto3 S3 client."""

    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield self._info(obj)

    def list_page(self, prefix: str, start_after: str | None = None, max_keys: int = 1000) -> list[ObjectInfo]:
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + prefix, "MaxKeys": max_keys}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        return [self._info(obj) for obj in self.client.list_objects_v2(**kwargs).get("Contents", [])]

    def list_prefixes(self, prefix: str) -> list[str]:
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/"
        )
        for page in pages:
            found.extend(p["Prefix"][len(self.prefix) :] for p in page.get("CommonPrefixes", []))
        return found

    def _info(self, obj: dict) -> ObjectInfo:
        return ObjectInfo(key=obj["Key"][len(self.prefix) :], size=obj["Size"], etag=obj["ETag"].strip('"'))


def open_bucket(url: str, s3_client=None, endpoint_url: str | None = None) -> Bucket:
    """A bucket from ``PINTREST_BUCKET``'s value: a directory or ``s3://bucket[/prefix]``."""
    if url.startswith("s3://"):
        parsed = urlparse(url)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3", endpoint_url=endpoint_url)
        return S3Bucket(s3_client, parsed.netloc, parsed.path)
    return LocalBucket(url)
