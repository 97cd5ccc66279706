"""What the web app checks before it calls a backend: the caller's key and role, body sizes,
what an uploaded file really is (by its first bytes, not its name or declared type), and the
response headers every page gets (a Content-Security-Policy that allows no inline script).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.auth import load_api_keys, role_of, supplied_key
from services.web.errors import ApiError, error_body

#: No inline script or style, no plugins, no framing; media and images from this origin and blob:
#: (the pages fetch media with the API key header and play it from a blob URL).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class Keys:
    """The API keys the app accepts, or none (loopback development)."""

    def __init__(self, path: Path | None) -> None:
        self._keys = load_api_keys(path) if path else None

    @property
    def enabled(self) -> bool:
        return self._keys is not None

    def metadata(self, headers, need: str = "read") -> tuple[tuple[str, str], ...]:
        """The gRPC metadata that carries the caller's key on; 401 or 403 when it may not do this."""
        key = supplied_key((k.lower(), v) for k, v in headers.items())
        if self._keys is None:
            return (("x-api-key", key),) if key else ()
        role = role_of(self._keys, key)
        if role is None:
            raise ApiError(401, "missing or unknown API key (send x-api-key)")
        if need == "write" and role != "write":
            raise ApiError(403, f"a {role} key may not upload, cancel or delete")
        return (("x-api-key", key),)


@dataclass(frozen=True)
class Sniffed:
    """What a file's first bytes say it is."""

    kind: str  # "image" or "video"
    format: str  # "jpeg", "mp4", "mxf", ...


_SIGNATURES: tuple[tuple[int, bytes, Sniffed], ...] = (
    (0, b"\xff\xd8\xff", Sniffed("image", "jpeg")),
    (0, b"\x89PNG\r\n\x1a\n", Sniffed("image", "png")),
    (0, b"GIF87a", Sniffed("image", "gif")),
    (0, b"GIF89a", Sniffed("image", "gif")),
    (0, b"BM", Sniffed("image", "bmp")),
    (4, b"ftyp", Sniffed("video", "mp4")),  # MP4, MOV, 3GP, M4V
    (4, b"moov", Sniffed("video", "mov")),
    (4, b"mdat", Sniffed("video", "mov")),
    (4, b"wide", Sniffed("video", "mov")),
    (0, b"\x06\x0e\x2b\x34\x02\x05\x01\x01", Sniffed("video", "mxf")),  # SMPTE 377 partition pack key
    (0, b"\x1a\x45\xdf\xa3", Sniffed("video", "matroska")),  # MKV, WebM
    (0, b"\x00\x00\x01\xba", Sniffed("video", "mpeg-ps")),
    (0, b"FLV", Sniffed("video", "flv")),
)


def sniff(head: bytes) -> Sniffed | None:
    """The kind of media ``head`` (the first 1 KiB or more of a file) starts like, or None."""
    for offset, magic, found in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return found
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI "):
        return Sniffed("image", "webp") if head[8:12] == b"WEBP" else Sniffed("video", "avi")
    # MPEG transport stream: a sync byte every 188 bytes (or 192 with a 4-byte timestamp, M2TS).
    for size, skip in ((188, 0), (192, 4)):
        if len(head) >= 2 * size + skip and all(head[skip + i * size] == 0x47 for i in range(len(head) // size)):
            return Sniffed("video", "mpeg-ts")
    return None


def require(head: bytes, kinds: tuple[str, ...]) -> Sniffed:
    found = sniff(head)
    if found is None or found.kind not in kinds:
        what = " or ".join(kinds)
        raise ApiError(415, f"the file is not a supported {what} (its first bytes match no {what} format)")
    return found


class SecurityHeaders:
    """Adds the CSP and friends to every response, and caps request bodies.

    Bodies are capped twice: up front by Content-Length (413 before anything is read) and while
    they stream, for chunked bodies that declare no length.
    """

    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_query_bytes: int,
                 upload_paths: tuple[str, ...] = ("/api/v1/videos",)) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_query_bytes = max_query_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        limit = self.max_upload_bytes if scope["path"] in self.upload_paths else self.max_query_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reject(send_with_headers, 413, f"the request body is larger than the limit of {limit} bytes")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, f"the request body is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, counted, send_with_headers)


async def _reject(send: Send, status: int, message: str) -> None:
    body = json.dumps(error_body(status, "PAYLOAD_TOO_LARGE", message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
