"""Checking where audit archives go: CRMTASKS_ARCHIVE_URL (or its alias CRMTASKS_ARCHIVE_DIR) and the S3 options.

``file:///absolute/dir`` (the default is ``$CRMTASKS_HOME/archive``) or
``s3://bucket/prefix``. Credentials never belong in these URLs (boto3 reads
them from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or
~/.aws): one given there is refused without being echoed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from crmtasks.errors import SettingsError
from crmtasks.settings.secrets import mask_url

# S3's bucket naming rules (lowercase letters, digits, dots and hyphens; 3 to 63 characters).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_EXPECTED = "expected file:///absolute/dir or s3://bucket/prefix"


def archive_target(environ: Mapping[str, str]) -> dict:
    """Settings fields ``archive_dir``, ``archive_bucket`` and ``archive_prefix`` from the environment.

    CRMTASKS_ARCHIVE_DIR (a directory path) is kept as an alias of
    ``CRMTASKS_ARCHIVE_URL=file://<dir>``; setting both is refused, as one
    of them would be silently ignored.
    """
    url = (environ.get("CRMTASKS_ARCHIVE_URL") or "").strip()
    directory = (environ.get("CRMTASKS_ARCHIVE_DIR") or "").strip()
    if url and directory:
        raise SettingsError("CRMTASKS_ARCHIVE_DIR", "is an alias of CRMTASKS_ARCHIVE_URL; set only one of them")
    if directory:
        return {"archive_dir": local_directory("CRMTASKS_ARCHIVE_DIR", directory)}
    if not url:
        return {}
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "://" not in url:
        raise SettingsError("CRMTASKS_ARCHIVE_URL", f"is not a URL; {_EXPECTED}")
    if scheme not in ("file", "s3"):
        raise SettingsError("CRMTASKS_ARCHIVE_URL", f"scheme {scheme or '(none)'!r} is not supported; {_EXPECTED}")
    if "@" in parts.netloc:
        raise SettingsError("CRMTASKS_ARCHIVE_URL", "carries credentials; remove them from the URL and give them as "
                                                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    if parts.query or parts.fragment:
        raise SettingsError("CRMTASKS_ARCHIVE_URL", f"takes no ?query or #fragment; {_EXPECTED} (got {mask_url(url)})")
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise SettingsError("CRMTASKS_ARCHIVE_URL", f"a file URL needs an absolute path on this host, "
                                                        f"file:///dir (got {url})")
        return {"archive_dir": local_directory("CRMTASKS_ARCHIVE_URL", unquote(parts.path))}
    if not _BUCKET.fullmatch(parts.netloc):
        raise SettingsError("CRMTASKS_ARCHIVE_URL", f"{parts.netloc or '(none)'!r} is not an S3 bucket name "
                                                    f"(3-63 lowercase letters, digits, dots, hyphens); {_EXPECTED}")
    prefix = parts.path.strip("/")
    if "//" in prefix:
        raise SettingsError("CRMTASKS_ARCHIVE_URL", f"the prefix {prefix!r} has an empty segment (//)")
    return {"archive_bucket": parts.netloc, "archive_prefix": prefix}


def local_directory(variable: str, value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise SettingsError(variable, f"{path} exists and is not a directory")
    return path


def endpoint_url(value: str | None) -> str | None:
    """CRMTASKS_S3_ENDPOINT_URL: ``http(s)://host[:port]`` of an S3-compatible server; None means AWS."""
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("CRMTASKS_S3_ENDPOINT_URL", f"expected http(s)://host:port of an S3-compatible server "
                                                        f"(got {mask_url(value)})")
    if "@" in parts.netloc:
        raise SettingsError("CRMTASKS_S3_ENDPOINT_URL", "carries credentials; give them as AWS_ACCESS_KEY_ID/"
                                                        "AWS_SECRET_ACCESS_KEY or AWS_PROFILE instead")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise SettingsError("CRMTASKS_S3_ENDPOINT_URL", f"the port is not a number (got {mask_url(value)})") from None
    return value
