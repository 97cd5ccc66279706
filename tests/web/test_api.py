"""The HTTP/JSON API against the live stack: every endpoint, the gRPC -> HTTP error mapping with the
backends' own messages, filters, Range, server-sent events, uploads played back, and API keys."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import av
import httpx
import pytest

from services.common.settings import SettingsError
from services.local.processes import HttpServiceProcess
from services.web.settings import HttpServerSettings, WebSettings
from tests.media import make_png, make_video
from tests.web.conftest import DROP_ID, MXF_ID, WebStack

# Starts whole process stacks: `make test-fast` leaves it out.
pytestmark = pytest.mark.slow

KOREAN = "스튜디오에서 전화를 받는 남자"


@pytest.fixture(scope="module")
def http(web: WebStack):
    with httpx.Client(base_url=web.url, timeout=120) as client:
        yield client


def search(http: httpx.Client, **params) -> dict:
    reply = http.get("/api/v1/search", params=params)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    return reply.json()


@pytest.mark.parametrize("page", ["/search", "/ingest"])
def test_pages_have_a_strict_csp_and_no_inline_script(http: httpx.Client, page: str) -> None:
    reply = http.get(page)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert reply.headers["x-content-type-options"] == "nosniff"
    html = reply.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\son[a-z]+=", html) and " style=" not in html
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert http.get(src).status_code == 200, src


def test_root_redirects_to_search_and_unknown_paths_are_json_404(http: httpx.Client) -> None:
    assert http.get("/", follow_redirects=False).headers["location"] == "/search"
    reply = http.get("/api/v1/nothing")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "NOT_FOUND"


def test_openapi_document_lists_every_endpoint(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert set(paths) >= {"/api/v1/search", "/api/v1/search.csv", "/api/v1/search.edl",
                          "/api/v1/clips/{clip_id}/thumbnail", "/api/v1/clips/{clip_id}/video", "/api/v1/videos",
                          "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/events", "/api/v1/jobs/{job_id}/cancel",
                          "/api/v1/videos/{video_id}", "/api/v1/config"}
    assert set(paths["/api/v1/search"]) == {"get", "post"}
    # The search routes read their query string through one model; the document lists its fields.
    filters = {"k", "tags", "programme", "from", "to", "collapse", "video"}
    for path in ("/api/v1/search", "/api/v1/search.csv", "/api/v1/search.edl"):
        documented = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert set(documented) == filters | {"q", "like", "lang"}
        assert documented["k"]["schema"]["maximum"] == 200 and documented["k"]["in"] == "query"
    assert {p["name"] for p in paths["/api/v1/search"]["post"]["parameters"]} == filters


def test_korean_text_search_ranks_hits_with_thumbnails(http: httpx.Client, web: WebStack) -> None:
    result = search(http, q=KOREAN, k=5, lang="ko")
    hits = result["hits"]
    assert len(hits) == 5 and result["model_id"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    thumb = http.get(hits[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"


def test_mxf_hits_carry_the_sources_timecode(http: httpx.Client) -> None:
    hits = search(http, q="tape", video=MXF_ID, k=10)["hits"]
    by_start = {h["start_seconds"]: h for h in hits}
    assert by_start[0.0]["source_timecode"] == "10:00:00:00"
    assert by_start[2.0]["source_timecode"] == "10:00:02:00" and by_start[2.0]["source_end_timecode"] == "10:00:04:00"
    assert by_start[2.0]["frame_rate"] == "25" and by_start[2.0]["start_timecode"] == "00:00:02.000"


def test_drop_frame_source_is_labelled_with_semicolons(http: httpx.Client) -> None:
    hits = search(http, q="tape", video=DROP_ID, k=10)["hits"]
    by_start = {h["start_seconds"]: h for h in hits}
    assert by_start[0.0]["source_timecode"] == "01:00:00;00"
    assert by_start[2.0]["source_timecode"] == "01:00:02;00" and by_start[2.0]["frame_rate"] == "30000/1001"


@pytest.mark.parametrize(("params", "videos"), [
    ({"programme": "Drama"}, {"drama-0501"}),
    ({"tags": "docu"}, {"docu-0610"}),
    ({"tags": "drama,studio"}, {"drama-0501"}),
    ({"from": "2024-01-01", "to": "2024-04-30"}, {"news-0412"}),
    ({"from": "2024-05-01"}, {"drama-0501"}),
])
def test_filters(http: httpx.Client, params: dict, videos: set[str]) -> None:
    hits = search(http, q="scene", k=50, **params)["hits"]
    assert hits and {h["video_id"] for h in hits} == videos


def test_collapse_keeps_one_hit_per_video_and_like_ranks_the_other_clips(http: httpx.Client) -> None:
    hits = search(http, q="scene", k=50, collapse="true")["hits"]
    assert len(hits) == len({h["video_id"] for h in hits}) == 5
    clip = hits[-1]["clip_id"]
    like = search(http, like=clip, k=50)["hits"]
    # Every other clip of the archive, ranked; the clip itself is left out.
    assert len(like) == len(search(http, q="scene", k=50)["hits"]) - 1 and clip not in {h["clip_id"] for h in like}


def test_search_by_image_and_by_video_file(http: httpx.Client, web: WebStack, tmp_path: Path) -> None:
    png = make_png(tmp_path / "query.png", size=(96, 64))
    reply = http.post("/api/v1/search", params={"k": 3}, files={"file": ("q.png", png.read_bytes(), "image/png")})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["hits"]) == 3
    video = web.library / "news-0412.mp4"
    reply = http.post("/api/v1/search", params={"k": 3}, data={"start": "0", "end": "2"},
                      files={"file": ("q.mp4", video.read_bytes(), "video/mp4")})
    assert reply.status_code == 200, reply.text
    assert reply.json()["hits"][0]["video_id"] == "news-0412"


def test_clip_video_supports_range_requests(http: httpx.Client) -> None:
    hit = search(http, q="tape", video=MXF_ID, k=10)["hits"][0]
    whole = http.get(hit["video_url"])
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes", whole.text[:500]
    assert whole.headers["content-type"] == "video/mp4" and whole.content[4:8] == b"ftyp"
    size = len(whole.content)
    part = http.get(hit["video_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == whole.content[100:200]
    tail = http.get(hit["video_url"], headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == whole.content[-16:]
    with av.open(io.BytesIO(whole.content)) as container:
        frames = list(container.decode(video=0))
    assert frames and frames[0].time == 0.0


def test_exports_csv_and_edl(http: httpx.Client) -> None:
    csv_reply = http.get("/api/v1/search.csv", params={"q": KOREAN, "video": MXF_ID, "k": 3})
    assert csv_reply.status_code == 200 and csv_reply.headers["content-type"].startswith("text/csv")
    assert csv_reply.text.lstrip("\ufeff").startswith("rank,score,clip_id") and "10:00:0" in csv_reply.text
    edl = http.get("/api/v1/search.edl", params={"q": KOREAN, "video": MXF_ID, "k": 3}).text
    assert edl.startswith(f"TITLE: vidsearch: {KOREAN}") and "FCM: NON-DROP FRAME" in edl
    events = re.findall(r"^\d{3}  TAPE_MXF V     C        (10:\S+) (10:\S+) (01:\S+) (01:\S+)\r?$", edl, re.M)
    assert len(events) == 3 and events[0][2] == "01:00:00:00"


def test_upload_events_playback_and_delete(http: httpx.Client, tmp_path: Path) -> None:
    video = make_video(tmp_path / "upload me.mp4", seconds=5, fps=10, size=(96, 64), pattern="rgbtestsrc", gop=25)
    reply = http.post("/api/v1/videos", params={"filename": video.name, "title": "업로드", "programme": "Uploads",
                                                "air_date": "2025-01-02", "tags": "upload,web", "window": 2},
                      content=video.read_bytes(), headers={"content-type": "application/octet-stream"})
    assert reply.status_code == 202, reply.text
    job = reply.json()
    events = []
    with http.stream("GET", job["events_url"]) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    assert events[-1] == ("end", {})
    last = events[-2][1]
    assert last["state"] == "SUCCEEDED" and last["stage"] == "DONE" and last["clips_done"] == last["clips_total"] > 0
    assert http.get(f"/api/v1/jobs/{job['job_id']}").json()["state"] == "SUCCEEDED"
    assert http.post(f"/api/v1/jobs/{job['job_id']}/cancel").json()["state"] == "SUCCEEDED"  # final: unchanged
    hits = search(http, q="업로드", video=job["video_id"], k=10)["hits"]
    assert hits and hits[0]["title"] == "업로드" and hits[0]["programme"] == "Uploads"
    # An uploaded source plays (its source is 'media:uploads/...'), from the clip's first frame.
    second = next(h for h in hits if h["start_seconds"] == 2.0)
    clip = http.get(second["video_url"])
    assert clip.status_code == 200, clip.text
    with av.open(io.BytesIO(clip.content)) as container:
        times = [f.time for f in container.decode(video=0)]
    # From the clip's first frame (not the keyframe at 0 s) to its end, give or take the reference
    # frame x264 puts up to 3 frames after it.
    length = second["end_seconds"] - second["start_seconds"]
    assert times[0] == 0.0 and length - 0.1 <= times[-1] <= length + 0.35
    deleted = http.delete(f"/api/v1/videos/{job['video_id']}")
    assert deleted.status_code == 200 and deleted.json()["clips_deleted"] == len(hits)
    assert search(http, q="업로드", video=job["video_id"])["hits"] == []


def _corrupt_mp4() -> bytes:
    return b"\x00\x00\x00\x18ftypisom" + b"\x00" * 12 + b"not really a video" * 100


ERRORS = [
    ("GET", "/api/v1/search", {}, None, 400, "give exactly one of q"),
    ("GET", "/api/v1/search?q=x&like=a:000000001", {}, None, 400, "give exactly one of q"),
    ("GET", "/api/v1/search?q=x&k=0", {}, None, 400, "k:"),
    ("GET", "/api/v1/search?q=x&k=many", {}, None, 400, "k:"),
    ("GET", "/api/v1/search?q=x&k=201", {}, None, 400, "k:"),
    ("GET", "/api/v1/search?q=" + "가" * 1001, {}, None, 400, "q:"),
    ("GET", "/api/v1/search?q=x&from=2024-02-30", {}, None, 400, "YYYY-MM-DD"),
    ("GET", "/api/v1/search?q=x&from=2024-05-01&to=2024-01-01", {}, None, 400, "is after"),
    ("GET", "/api/v1/search?q=x&video=../etc", {}, None, 400, "malformed"),
    ("GET", "/api/v1/search?like=../../etc/passwd", {}, None, 400, "malformed clip id"),
    ("GET", "/api/v1/search?like=nobody:000000000", {}, None, 404, "nobody:000000000"),
    ("GET", "/api/v1/clips/not-a-clip/thumbnail", {}, None, 400, "malformed clip id"),
    ("GET", "/api/v1/clips/nobody:000000000/thumbnail", {}, None, 404, "no clip"),
    ("GET", "/api/v1/clips/nobody:000000000/video", {}, None, 404, "no clip"),
    ("POST", "/api/v1/search", {"file": ("a.txt", b"just some text, not media" * 10, "image/png")}, None, 415,
     "not a supported image or video"),
    ("POST", "/api/v1/search", {}, None, 400, "file"),
    ("POST", "/api/v1/search", {"file": ("a.mp4", b"", "video/mp4")}, None, 400, "empty"),
    ("POST", "/api/v1/search", {"file": ("a.mp4", _corrupt_mp4(), "video/mp4")}, None, 400, ""),
    ("POST", "/api/v1/search", {"file": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (5 << 20), "image/png")}, None,
     413, "larger than the limit"),
    ("POST", "/api/v1/videos?filename=a.mp4", None, b"\x89PNG\r\n\x1a\n" + b"\0" * 5000, 415, "not a supported video"),
    ("POST", "/api/v1/videos?filename=a.mp4", None, b"", 400, "empty"),
    ("POST", "/api/v1/videos", None, b"\x00\x00\x00\x18ftypisom", 400, "filename"),
    ("POST", "/api/v1/videos?filename=a.mp4&air_date=yesterday", None, _corrupt_mp4(), 400, "YYYY-MM-DD"),
    ("POST", "/api/v1/videos?filename=a.mp4&video_id=..%2Fx", None, _corrupt_mp4(), 400, "video_id"),
    ("GET", "/api/v1/jobs/0123456789abcdef", {}, None, 404, "0123456789abcdef"),
    ("GET", "/api/v1/jobs/bad$id", {}, None, 400, "malformed job id"),
    ("GET", "/api/v1/jobs/0123456789abcdef/events", {}, None, 404, ""),
    ("POST", "/api/v1/jobs/0123456789abcdef/cancel", {}, None, 404, ""),
    ("DELETE", "/api/v1/videos/bad id!", {}, None, 400, "malformed video id"),
]


@pytest.mark.parametrize(("method", "path", "files", "body", "status", "message"), ERRORS,
                         ids=[f"{m} {p[:60]} -> {s}" for m, p, _, _, s, _ in ERRORS])
def test_bad_input_gets_a_4xx_with_a_message(http: httpx.Client, method, path, files, body, status,
                                            message) -> None:
    reply = http.request(method, path, files=files or None, content=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["status"] == status and message in error["message"]


def test_unsatisfiable_range_is_416(http: httpx.Client) -> None:
    hit = search(http, q="tape", video=MXF_ID, k=1)["hits"][0]
    reply = http.get(hit["video_url"], headers={"Range": "bytes=99999999-"})
    assert reply.status_code == 416, reply.text
    assert reply.headers["content-range"].startswith("bytes */")
    assert reply.json()["error"]["code"] == "RANGE_NOT_SATISFIABLE"


def test_without_keys_the_app_refuses_to_bind_beyond_loopback() -> None:
    with pytest.raises(SettingsError, match="loopback"):
        WebSettings(gateway="127.0.0.1:1", server=HttpServerSettings(host="0.0.0.0"))
    assert WebSettings(gateway="127.0.0.1:1", server=HttpServerSettings(host="::1")).server.loopback


def test_api_keys_are_checked_and_passed_on(web: WebStack, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("reader-key-0123456789 read\nwriter-key-0123456789 write\n")
    proc = HttpServiceProcess("services.web", {
        "VIDSEARCH_WEB_GATEWAY": web.stack.gateway.address, "VIDSEARCH_WEB_INGEST": web.stack.ingest.address,
        "VIDSEARCH_WEB_API_KEYS_FILE": str(keys), "VIDSEARCH_WEB_SERVER_HOST": "127.0.0.1"},
        tmp_path / "web-keys.log", env_prefix="VIDSEARCH_WEB").start()
    try:
        proc.wait_serving(timeout=60)
        with httpx.Client(base_url=proc.url, timeout=60) as client:
            assert client.get("/api/v1/config").json()["api_keys"] is True
            missing = client.get("/api/v1/search", params={"q": KOREAN})
            assert missing.status_code == 401 and "x-api-key" in missing.headers["www-authenticate"]
            wrong = client.get("/api/v1/search", params={"q": KOREAN}, headers={"x-api-key": "x" * 20})
            assert wrong.status_code == 401
            read = {"x-api-key": "reader-key-0123456789"}
            assert client.get("/api/v1/search", params={"q": KOREAN}, headers=read).status_code == 200
            bearer = {"authorization": "Bearer reader-key-0123456789"}
            assert client.get("/api/v1/search", params={"q": KOREAN}, headers=bearer).status_code == 200
            png = make_png(tmp_path / "x.png")
            for method, path in (("POST", "/api/v1/videos?filename=a.mp4"), ("DELETE", "/api/v1/videos/news-0412"),
                                 ("POST", "/api/v1/jobs/0123456789abcdef/cancel")):
                denied = client.request(method, path, headers=read, content=png.read_bytes())
                assert denied.status_code == 403 and "read key may not" in denied.json()["error"]["message"]
            # A write key gets past the check (to the content sniffing, which refuses a PNG as a video).
            written = client.post("/api/v1/videos?filename=a.mp4", content=png.read_bytes(),
                                  headers={"x-api-key": "writer-key-0123456789"})
            assert written.status_code == 415
    finally:
        proc.stop()
