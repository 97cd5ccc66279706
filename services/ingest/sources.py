"""Where a job's video comes from: a local file under an allowed root, or an upload in the media store.

A job's source is a string: ``file:///abs/path`` for a submitted file, or ``media:<key>`` for an
upload kept in the media store. Submitted paths are checked twice: when the job is submitted
(for a clear INVALID_ARGUMENT) and again by the decoding process, which opens the file first and
then checks the file it actually holds (via ``/proc/self/fd``), so a symlink swapped in after
submission cannot redirect it outside the roots.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from services.common.atomic import fsync_path
from services.common.clip_ids import UPLOADS_INCOMING, VIDEO_ID, upload_key
from services.common.errors import InvalidInput, NotFound, StorageFull, VidsearchError
from services.media.store import MEDIA_SCHEME, MediaStore

#: Part of every refusal of a path outside the allowed roots (for people; clients read the reason).
OUTSIDE_ROOTS = "is not under an allowed root"
# Reasons (vidsearch.common.v1.ErrorReason names) of a submitted path the service cannot ingest;
# on any of them a client holding the file uploads it instead.
SOURCE_OUTSIDE_ROOTS = "ERROR_REASON_SOURCE_OUTSIDE_ROOTS"
SOURCE_NOT_FOUND = "ERROR_REASON_SOURCE_NOT_FOUND"
SOURCE_UNREADABLE = "ERROR_REASON_SOURCE_UNREADABLE"
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
#: Chunk size for hashing and copying files.
BLOCK = 1024 * 1024


def validate_video_id(video_id: str) -> str:
    """A video id must be usable in clip ids and media keys: letters, digits and ``._:-``."""
    if not VIDEO_ID.fullmatch(video_id):
        raise InvalidInput(
            f"video_id {video_id!r} must be 1-128 characters of letters, digits and '._:-', "
            "not starting with '.', ':' or '-'"
        )
    return video_id


def video_id_from_digest(digest: str) -> str:
    """The id of a video submitted without one: its content hash, shortened."""
    return digest[:32]


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def path_of_uri(uri: str) -> Path:
    """The absolute path named by a local path or ``file://`` URI; anything else is refused."""
    if not uri:
        raise InvalidInput("uri must not be empty")
    if "\0" in uri:
        raise InvalidInput("uri must not contain NUL characters")
    if uri.startswith("/"):
        raw = uri
    else:
        parts = urlsplit(uri)
        if parts.scheme.lower() != "file":
            shown = f"scheme {parts.scheme!r}" if parts.scheme else "a relative path"
            raise InvalidInput(f"uri {uri!r} uses {shown}; only absolute paths and file:// URIs are accepted")
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"file URI {uri!r} names host {parts.netloc!r}; only local files are accepted")
        if parts.query or parts.fragment:
            raise InvalidInput(f"file URI {uri!r} must not have a query or fragment")
        raw = unquote(parts.path)
        if "\0" in raw or not raw.startswith("/"):
            raise InvalidInput(f"file URI {uri!r} does not name an absolute path")
    if ".." in PurePosixPath(raw).parts:
        raise InvalidInput(f"path {raw!r} must not contain '..'")
    return Path(raw)


def resolve_submitted(uri: str, roots: Sequence[Path]) -> Path:
    """The real path of a submitted video, refused unless it is a regular file under a root."""
    path = path_of_uri(uri)
    if not roots:
        raise InvalidInput(f"{path} {OUTSIDE_ROOTS}: this service accepts no paths, only uploads",
                           reason=SOURCE_OUTSIDE_ROOTS)
    real = Path(os.path.realpath(path))
    if not _under(real, roots):
        what = f"{path} (a link to {real})" if real != path else str(path)
        raise InvalidInput(f"{what} {OUTSIDE_ROOTS} ({', '.join(map(str, roots))})", reason=SOURCE_OUTSIDE_ROOTS)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}", reason=SOURCE_NOT_FOUND) from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", reason=SOURCE_UNREADABLE) from None
    if not stat.S_ISREG(mode):
        raise InvalidInput(f"{path} is not a regular file", reason=SOURCE_UNREADABLE)
    return real


def file_source(path: Path) -> str:
    return path.as_uri()


def media_source(key: str) -> str:
    return f"{MEDIA_SCHEME}{key}"


@contextlib.contextmanager
def opened(source: str, roots: Sequence[Path], media: MediaStore) -> Iterator[str]:
    """A path the decoder can open that is bound to the checked file for as long as this is held."""
    if source.startswith(MEDIA_SCHEME):
        path = media.path(source[len(MEDIA_SCHEME):])
        if not path.is_file():
            raise NotFound(f"uploaded video {source} is no longer in the media store")
        with _named_in_errors(str(path), source):
            yield str(path)
        return
    path = resolve_submitted(source, roots)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot open {path}: {exc.strerror}") from None
    try:
        link = f"/proc/self/fd/{fd}"
        if not os.path.exists(link):  # no procfs: the check above is the best there is
            yield str(path)
            return
        held = Path(os.readlink(link))
        if not _under(held, roots) or not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"{path} {OUTSIDE_ROOTS} (it changed after submission)")
        with _named_in_errors(link, str(path)):
            yield link
    finally:
        os.close(fd)


@contextlib.contextmanager
def _named_in_errors(opened_as: str, name: str) -> Iterator[None]:
    """Errors name the video as the user knows it, not by the path the decoder happened to open."""
    try:
        yield
    except VidsearchError as exc:
        raise type(exc)(str(exc).replace(opened_as, name), reason=exc.reason) from exc


def digest_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            sha.update(block)
    return sha.hexdigest()


def upload_extension(filename: str) -> str:
    """The stored upload's extension: the original's when it looks like one, else ``.bin``."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    return suffix if _EXTENSION.fullmatch(suffix) else ".bin"


class UploadFile:
    """An upload being received: chunks go to a temporary file in the media store, hashed as they come.

    ``commit`` moves the file to ``uploads/<video_id>/<content hash><ext>`` (the same content
    uploaded twice is stored once); ``discard`` removes it. Writes are synchronous: call them from
    a thread.
    """

    def __init__(self, media: MediaStore, max_bytes: int, extension: str) -> None:
        self.media = media
        self.max_bytes = max_bytes
        self.extension = extension
        self.size = 0
        self._sha = hashlib.sha256()
        self._tmp = media.path(f"{UPLOADS_INCOMING}/{uuid.uuid4().hex}.part")
        self._tmp.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit or discard

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.max_bytes:
            raise InvalidInput(f"upload is larger than the limit of {self.max_bytes} bytes")
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise _storage_error(exc) from exc
        self._sha.update(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return self._sha.hexdigest()

    def commit(self, video_id: str) -> str:
        """Moves the finished upload into place; returns its media key."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            key = upload_key(video_id, self.digest[:16], self.extension)
            target = self.media.path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, target)
            fsync_path(target.parent)  # the job that names this key is queued next: the rename must last
        except OSError as exc:
            self.discard()
            raise _storage_error(exc) from exc
        return key

    def discard(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"media store is full: {exc.strerror}")
    return exc
