"""Sources: which paths and URIs a submission may name, the decoder's re-check, and uploads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.common.errors import InvalidInput, NotFound
from services.ingest import sources
from services.media.store import MediaStore


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "archive"
    (root / "news").mkdir(parents=True)
    (root / "news" / "clip.mp4").write_bytes(b"video")
    (root / "with space.mp4").write_bytes(b"video")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"secret")
    (root / "escape.mp4").symlink_to(outside / "secret.mp4")
    (root / "escape_dir").symlink_to(outside)
    (root / "alias.mp4").symlink_to(root / "news" / "clip.mp4")
    return {"root": root, "outside": outside}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("{root}/news/clip.mp4", "news/clip.mp4"),
        ("file://{root}/news/clip.mp4", "news/clip.mp4"),
        ("file://localhost{root}/news/clip.mp4", "news/clip.mp4"),
        ("FILE://{root}/with%20space.mp4", "with space.mp4"),
        ("{root}/alias.mp4", "news/clip.mp4"),  # a link that stays inside the root is followed
    ],
)
def test_accepted_sources_resolve_to_the_real_file(tree: dict[str, Path], uri: str, expected: str) -> None:
    root = tree["root"]
    assert sources.resolve_submitted(uri.format(root=root), [root]) == root / expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("{outside}/secret.mp4", sources.OUTSIDE_ROOTS),
        ("{root}/../private/secret.mp4", "'..'"),
        ("{root}/news/../news/clip.mp4", "'..'"),  # refused even though it would stay inside
        ("file://{root}/%2E%2E/private/secret.mp4", "'..'"),
        ("{root}/escape.mp4", sources.OUTSIDE_ROOTS),  # symlink to a file outside
        ("{root}/escape_dir/secret.mp4", sources.OUTSIDE_ROOTS),  # through a linked directory
        ("http://example.com/video.mp4", "scheme 'http'"),
        ("https://example.com/video.mp4", "scheme 'https'"),
        ("s3://bucket/video.mp4", "scheme 's3'"),
        ("ftp://host/video.mp4", "scheme 'ftp'"),
        ("data:video/mp4;base64,AAAA", "scheme 'data'"),
        ("news/clip.mp4", "a relative path"),
        ("file://otherhost{root}/news/clip.mp4", "host 'otherhost'"),
        ("file://{root}/news/clip.mp4?x=1", "query"),
        ("", "must not be empty"),
        ("{root}/news/clip.mp4\0.txt", "NUL"),
        ("{root}/news", "not a regular file"),
        ("/dev/null", sources.OUTSIDE_ROOTS),
    ],
)
def test_refused_sources_are_invalid_arguments(tree: dict[str, Path], uri: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("?", r"\?")):
        sources.resolve_submitted(uri.format(**tree), [tree["root"]])


def test_a_missing_file_under_a_root_is_not_found(tree: dict[str, Path]) -> None:
    with pytest.raises(NotFound):
        sources.resolve_submitted(f"{tree['root']}/news/gone.mp4", [tree["root"]])


def test_no_roots_means_no_paths(tree: dict[str, Path]) -> None:
    with pytest.raises(InvalidInput, match=sources.OUTSIDE_ROOTS):
        sources.resolve_submitted(f"{tree['root']}/news/clip.mp4", [])


def test_opened_holds_the_checked_file(tree: dict[str, Path], tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    uri = sources.file_source(tree["root"] / "news" / "clip.mp4")
    with sources.opened(uri, [tree["root"]], media) as path:
        assert Path(path).read_bytes() == b"video"


def test_errors_name_the_submitted_file_not_the_descriptor(tree: dict[str, Path], tmp_path: Path) -> None:
    uri = sources.file_source(tree["root"] / "news" / "clip.mp4")
    with pytest.raises(InvalidInput) as err, sources.opened(uri, [tree["root"]], MediaStore(tmp_path / "m")) as path:
        raise InvalidInput(f"not a readable video ({path}): Invalid data")
    assert str(err.value) == f"not a readable video ({tree['root'] / 'news' / 'clip.mp4'}): Invalid data"


def test_opened_refuses_a_file_swapped_after_the_check(tree: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # As if a symlink replaced the file between the path check and the open.
    monkeypatch.setattr(sources, "resolve_submitted", lambda uri, roots: tree["root"] / "escape.mp4")
    with pytest.raises(InvalidInput, match="changed after submission"), \
            sources.opened("file:///anything", [tree["root"]], MediaStore(tmp_path / "media")):
        pass


def test_opened_media_sources(tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    media.put("uploads/v1/abc.mp4", b"uploaded")
    with sources.opened(sources.media_source("uploads/v1/abc.mp4"), [], media) as path:
        assert Path(path).read_bytes() == b"uploaded"
    with pytest.raises(NotFound), sources.opened(sources.media_source("uploads/v1/gone.mp4"), [], media):
        pass
    with pytest.raises(InvalidInput), sources.opened(sources.media_source("../escape.mp4"), [], media):
        pass


def test_upload_is_hashed_limited_and_committed_atomically(tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    upload = sources.UploadFile(media, max_bytes=10, extension=".mp4")
    upload.write(b"01234")
    upload.write(b"56789")
    with pytest.raises(InvalidInput, match="larger than the limit"):
        upload.write(b"x")
    key = upload.commit("vid")
    assert key.startswith("uploads/vid/") and key.endswith(".mp4")
    assert media.get(key) == b"0123456789"
    assert list((media.root / "uploads" / ".incoming").iterdir()) == []
    discarded = sources.UploadFile(media, max_bytes=10, extension=".mp4")
    discarded.write(b"abc")
    discarded.discard()
    assert list((media.root / "uploads" / ".incoming").iterdir()) == []


@pytest.mark.parametrize(("filename", "ext"), [("news.MP4", ".mp4"), ("a.b.mkv", ".mkv"), ("noext", ".bin"),
                                               ("../../x.mp4", ".mp4"), ("weird.m p4", ".bin"), ("", ".bin")])
def test_upload_extension(filename: str, ext: str) -> None:
    assert sources.upload_extension(filename) == ext


@pytest.mark.parametrize("video_id", ["abc", "news_2024-01-01", "a:b.c", "0fe5441eb844f628c58b096f29fa316f"])
def test_valid_video_ids(video_id: str) -> None:
    assert sources.validate_video_id(video_id) == video_id


@pytest.mark.parametrize("video_id", ["", ".hidden", "a/b", "../x", "a b", "-x", ":x", "x" * 129, "é"])
def test_invalid_video_ids(video_id: str) -> None:
    with pytest.raises(InvalidInput):
        sources.validate_video_id(video_id)


def test_digest_names_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(os.urandom(3 * sources.BLOCK + 5))
    b.write_bytes(a.read_bytes())
    assert sources.digest_file(a) == sources.digest_file(b)
    assert len(sources.video_id_from_digest(sources.digest_file(a))) == 32
