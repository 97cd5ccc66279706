"""``vidsearch search``: query the gateway from a terminal; a table of hits, optionally an HTML page."""

from __future__ import annotations

import argparse
import html
import sys
from base64 import b64encode
from pathlib import Path

import grpc

from services.common import client_connection
from vidsearch.common.v1 import common_pb2
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search the archive through the gateway")
    p.add_argument("text", nargs="?", help='a sentence, e.g. "스튜디오에서 전화를 받는 남자"')
    p.add_argument("--image", type=Path, help="search with a still image")
    p.add_argument("--video", type=Path, help="search with a video clip (streamed to the gateway)")
    p.add_argument("--start", type=float, default=0.0, help="start of the part of --video to use, seconds")
    p.add_argument("--end", type=float, default=0.0, help="end of the part of --video to use (0: to the end)")
    p.add_argument("--like", metavar="CLIP_ID", help="more like an indexed clip")
    p.add_argument("--language", default="", help="language hint for text (ko, en)")
    p.add_argument("-k", "--top-k", type=int, default=10)
    p.add_argument("--video-id", action="append", default=[], help="only clips of this video (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="only clips with this tag (repeatable)")
    p.add_argument("--collapse", action="store_true", help="best clip per video only")
    p.add_argument("--html", type=Path, help="also write a results page with thumbnails")
    p.add_argument("--timeout", type=float, default=30.0)
    client_connection.add_arguments(p, "gateway")
    p.set_defaults(run=run)


def search_once(stub, args, md: tuple[tuple[str, str], ...] = ()) -> gateway_pb2.SearchResponse:
    base = {"top_k": args.top_k, "collapse_by_video": args.collapse,
            "filter": common_pb2.SearchFilter(video_ids=args.video_id, tags=args.tag)}
    if args.video:
        data = args.video.read_bytes()

        def stream():
            yield gateway_pb2.SearchByVideoRequest(search=gateway_pb2.SearchRequest(**base),
                                                   start_seconds=args.start, end_seconds=args.end)
            for i in range(0, len(data), 1 << 20):
                yield gateway_pb2.SearchByVideoRequest(chunk=data[i:i + (1 << 20)])

        return stub.SearchByVideo(stream(), timeout=args.timeout, metadata=md).result
    if args.image:
        request = gateway_pb2.SearchRequest(image=args.image.read_bytes(), **base)
    elif args.like:
        request = gateway_pb2.SearchRequest(clip_id=args.like, **base)
    elif args.text:
        request = gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=args.text, language=args.language), **base)
    else:
        raise SystemExit("give a text, --image, --video or --like")
    return stub.Search(request, timeout=args.timeout, metadata=md)


def print_table(title: str, reply: gateway_pb2.SearchResponse, out=None) -> None:
    out = out or sys.stdout  # looked up at call time, so a redirected stdout is honoured
    t = reply.timings
    print(f"\n{title}", file=out)
    print(f"  model {reply.model_id}  encode {t.encode_ms:.1f} ms  search {t.search_ms:.1f} ms  "
          f"total {t.total_ms:.1f} ms  cache {'hit' if t.cache_hit else 'miss'}"
          + (f"  PARTIAL (failed: {', '.join(reply.failed_shards)})" if reply.partial else ""), file=out)
    print(f"  {'#':>2}  {'score':>6}  {'start':>12}  {'end':>8}  {'clip':<32} {'shard':<8} title / caption", file=out)
    for i, h in enumerate(reply.hits, 1):
        label = h.metadata.get("title") or h.caption or h.video_id
        print(f"  {i:>2}  {h.score:6.3f}  {h.start_timecode:>12}  {h.end_seconds:7.1f}s  {h.clip_id:<32} "
              f"{h.shard:<8} {label}", file=out)


def write_html(path: Path, sections: list[tuple[str, gateway_pb2.SearchResponse]], stub,
               md: tuple[tuple[str, str], ...] = ()) -> None:
    """A self-contained page: thumbnails are fetched through GetThumbnail and inlined."""
    parts = ["<!doctype html><meta charset='utf-8'><title>vidsearch results</title>",
             "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:.5em;width:200px;"
             "vertical-align:top;font-size:12px}img{width:200px;background:#ddd}</style>"]
    for title, reply in sections:
        parts.append(f"<h2>{html.escape(title)}</h2><p>model {html.escape(reply.model_id)}, "
                     f"{reply.timings.total_ms:.0f} ms{' — partial' if reply.partial else ''}</p>")
        for h in reply.hits:
            img = ""
            if h.thumbnail_ref:
                try:
                    thumb = stub.GetThumbnail(gateway_pb2.GetThumbnailRequest(clip_id=h.clip_id), timeout=10,
                                              metadata=md)
                    img = f"<img alt='' src='data:image/jpeg;base64,{b64encode(thumb.image).decode()}'>"
                except grpc.RpcError:
                    img = ""
            label = h.metadata.get("title") or h.caption or h.video_id
            parts.append(f"<figure>{img}<figcaption><b>{h.score:.3f}</b> {html.escape(h.start_timecode)}<br>"
                         f"{html.escape(label)}<br><code>{html.escape(h.clip_id)}</code></figcaption></figure>")
    path.write_text("\n".join(parts), encoding="utf-8")


def run(args) -> int:
    connection = client_connection.from_args(args, "gateway")
    with connection.channel() as channel:
        stub = gateway_pb2_grpc.SearchServiceStub(channel)
        try:
            reply = search_once(stub, args, connection.metadata)
        except grpc.RpcError as err:
            print(f"search failed: {connection.describe_failure(err)}", file=sys.stderr)
            return 1
        title = args.text or (args.image and f"image {args.image}") or (args.video and f"video {args.video}") \
            or f"more like {args.like}"
        print_table(str(title), reply)
        if args.html:
            write_html(args.html, [(str(title), reply)], stub, connection.metadata)
            print(f"\nwrote {args.html}")
    return 0
