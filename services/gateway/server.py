"""Gateway process: settings, clients of every index generation (encoder and shards), the cache,
serving. The routing document in Redis (``services.common.routing``) says which generation is
active; without it the generation is the one of ``encoder`` and ``index_shards``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from services.common import logs, settings
from services.common.auth import ApiKeyInterceptor, load_api_keys
from services.common.errors import VidsearchError
from services.common.generations import GenerationPool, client_factory
from services.common.readiness import Pending
from services.common.retry import until_ready
from services.common.routing import Routing, RoutingStore, connect
from services.common.server import Registration, ServiceHooks, serve
from services.common.settings import setting
from services.gateway.cache import LocalLRUCache, QueryCache, RedisQueryCache
from services.gateway.clips import ClipLibrary
from services.gateway.search import SearchCore
from services.gateway.servicer import GatewayServicer
from services.media.store import MediaStore
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """Settings of the gateway, from VIDSEARCH_GATEWAY_* variables."""

    encoder: str = setting(doc="Encoder address, host:port or dns:///name:port.")
    index_shards: tuple[str, ...] = setting(
        doc="Comma-separated shard addresses in shard order (shard-0 first); a shard's replicas separated by |.")
    redis_url: str | None = setting(
        None, "Redis shared by every gateway replica for the query-embedding cache; unset: an in-process LRU.")
    redis_password_file: Path | None = setting(
        None, "File holding the Redis password (a mounted Secret); never put the password in redis_url.")
    cache_ttl_s: float = setting(86_400.0, "How long a cached query embedding is kept.")
    cache_max_entries: int = setting(10_000, "Size of the in-process LRU cache (without redis_url).")
    cache_socket_timeout_s: float = setting(
        0.05, "Redis cache calls that take longer are skipped (a miss), so a slow Redis never slows searches.")
    media_root: Path | None = setting(
        None, "The media store ingest writes thumbnails and uploads to; unset: no thumbnails or clip playback.")
    default_timeout_s: float = setting(10.0, "Budget of a search when the client sets no deadline.")
    max_video_bytes: int = setting(48 * 1024 * 1024, "Largest video SearchByVideo accepts.")
    api_keys_file: Path | None = setting(
        None, "API keys, one `<key> <read|write>` per line; unset: no keys checked (loopback development only).")
    key_prefix: str = setting(
        "vidsearch", "Namespace of the Redis keys, as ingest's key_prefix: the routing document is <prefix>:routing.")
    routing_poll_s: float = setting(
        1.0, "How often the routing document (the active index generation) is read from redis_url.")
    server: settings.ServerSettings = dataclasses.field(default_factory=settings.ServerSettings)

    def __post_init__(self) -> None:
        if not self.index_shards:
            raise settings.SettingsError("index_shards needs at least one address")
        if self.default_timeout_s <= 0:
            raise settings.SettingsError("default_timeout_s must be > 0")
        if self.routing_poll_s <= 0:
            raise settings.SettingsError("routing_poll_s must be > 0")
        settings.check_redis_password_file(self.redis_url, self.redis_password_file)


def build_cache(cfg: GatewaySettings) -> QueryCache:
    if cfg.redis_url:
        return RedisQueryCache(cfg.redis_url, cfg.cache_ttl_s, cfg.cache_socket_timeout_s,
                               password=settings.read_secret(cfg.redis_password_file))
    return LocalLRUCache(cfg.cache_max_entries, cfg.cache_ttl_s)


def routing_store(cfg: GatewaySettings) -> RoutingStore | None:
    """The routing document's store in the cache's Redis; None without Redis (the settings rule)."""
    if not cfg.redis_url:
        return None
    return RoutingStore(connect(cfg.redis_url, settings.read_secret(cfg.redis_password_file)), cfg.key_prefix)


async def run(cfg: GatewaySettings) -> None:
    media = MediaStore(cfg.media_root) if cfg.media_root else None
    interceptors = [ApiKeyInterceptor(load_api_keys(cfg.api_keys_file))] if cfg.api_keys_file else []
    store = routing_store(cfg)
    generations = GenerationPool(store, Routing.static(cfg.encoder, cfg.index_shards), client_factory(),
                                 poll_interval_s=cfg.routing_poll_s, close_delay_s=2 * cfg.default_timeout_s)
    cache = build_cache(cfg)
    core = SearchCore(generations, cache, default_timeout_s=cfg.default_timeout_s)
    core_slot: Pending[SearchCore] = Pending("the gateway is still starting")
    servicer = GatewayServicer(core_slot, ClipLibrary(generations, media), cfg.max_video_bytes)

    async def start() -> None:
        routing = await generations.start()
        # Ready once the encoder answers: without it no text, image or video query can run.
        model_id = await until_ready(core.refresh_model, what="the encoder", retry_on=(VidsearchError,),
                                     first_delay_s=0.2)
        core_slot.set(core)
        log.info("gateway ready: generation %s, model %s, %d shards, cache %s", routing.active, model_id,
                 len(generations.snapshot().shards), type(cache).__name__)

    async def stop() -> None:
        await generations.close()
        await cache.close()
        if store is not None:
            await store.redis.aclose()

    registration = Registration(
        gateway_pb2_grpc.add_SearchServiceServicer_to_server,
        servicer,
        gateway_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
    )
    await serve(cfg.server, [registration], ServiceHooks(start=start, stop=stop, extra_interceptors=interceptors))


def main() -> None:
    logs.configure("gateway")
    asyncio.run(run(settings.load_or_exit(GatewaySettings, "VIDSEARCH_GATEWAY")))
