"""Resolve URLs to (store, path), one cached store per scheme + bucket/host + options.

A build over 10,000 assets in one bucket must make one store (one connection pool),
not 10,000: :func:`open_store` keys a small LRU cache on :class:`StoreSpec`, a
hashable description of the store that also carries the environment it was built
from (endpoint, region, ...), so changing ``AWS_ENDPOINT_URL`` yields a new store.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlsplit

from obstore.store import AzureStore, GCSStore, HTTPStore, LocalStore, MemoryStore, S3Store

from .. import __version__
from .._heap import retain_freed_heap
from ..errors import ValidationError

__all__ = [
    "DEFAULT_CLIENT_OPTIONS",
    "CloudConfig",
    "StoreSpec",
    "UrlSigner",
    "clear_store_cache",
    "describe_url",
    "https_to_s3",
    "open_prefix_store",
    "open_store",
    "open_store_async",
    "resolve_url",
    "s3_to_https",
]

DEFAULT_CLIENT_OPTIONS: Mapping[str, Any] = {
    "connect_timeout": "5s",
    "timeout": "60s",  # whole request, body included: a 16 MiB range on a slow link
    "read_timeout": "20s",  # a stalled body fails fast and is retried by RetryPolicy
    "user_agent": f"tessellum/{__version__}",
}
"""obstore client options used unless a :class:`CloudConfig` overrides them."""


def _client_defaults() -> dict[str, Any]:
    """:data:`DEFAULT_CLIENT_OPTIONS` with the settings' ``request_timeout_s`` as the
    connect (at most 5 s) and stall timeouts; a whole request may take twice as long
    (at least 60 s: a 4 MiB range on a slow link)."""
    from ..config import get_settings

    ms = int(get_settings().request_timeout_s * 1000)
    return {
        **DEFAULT_CLIENT_OPTIONS,
        "connect_timeout": f"{min(ms, 5000)}ms",
        "read_timeout": f"{ms}ms",
        "timeout": f"{max(2 * ms, 60000)}ms",
    }


# obstore must not retry: tessellum's RetryPolicy counts attempts (see _retry.py)
_NO_RETRY = {"max_retries": 0, "retry_timeout": timedelta(minutes=3)}
_CACHE_SIZE = 256
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_S3_VHOST = re.compile(
    rf"^(?P<bucket>[a-z0-9][a-z0-9.\-]*?)\.s3(?:[.-](?P<region>{_REGION}))?\.amazonaws\.com$"
)
_S3_PATH = re.compile(rf"^s3(?:[.-](?P<region>{_REGION}))?\.amazonaws\.com$")
_AZURE = ("az", "azure", "adl", "abfs", "abfss")
_TRUE = ("1", "true", "yes", "on")


@runtime_checkable
class UrlSigner(Protocol):
    """Turns a URL into one the store accepts (e.g. appends a SAS token)."""

    async def sign(self, url: str) -> str:
        """Return the signed URL."""
        ...


@dataclass(frozen=True)
class CloudConfig:
    """How URLs are rewritten and stores are configured."""

    rewrites: Mapping[str, str] = field(default_factory=dict)
    """URL prefix -> replacement prefix, applied first; the longest matching prefix wins
    (e.g. ``{"https://data.example.com/": "s3://example-data/"}``)."""
    requester_pays: bool = False
    """Send ``x-amz-request-payer: requester`` (also set by ``AWS_REQUEST_PAYER``)."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """obstore ``ClientConfig`` keys merged over :data:`DEFAULT_CLIENT_OPTIONS`."""
    s3_https_as_s3: bool = True
    """Read ``https://bucket.s3.region.amazonaws.com/key`` as ``s3://bucket/key``
    (signed S3 requests, the bucket's region). Presigned URLs (with a query) stay HTTP."""
    skip_signature: bool | None = None
    """Unsigned S3/GCS requests. ``None``: only when no credentials are configured in the
    environment. Set ``False`` when credentials come from an instance role."""

    def rewrite(self, url: str) -> str:
        """Apply :attr:`rewrites` to ``url``."""
        best = max((p for p in self.rewrites if url.startswith(p)), key=len, default=None)
        return url if best is None else self.rewrites[best] + url[len(best) :]


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A hashable recipe for one store; equal specs share one cached store."""

    scheme: str
    """``http``, ``https``, ``s3``, ``gs``, ``az``..., ``file`` or ``memory``."""
    root: str
    """Bucket, container, HTTP origin (or a full signed URL), memory name; ``""`` for files."""
    config: tuple[tuple[str, Any], ...] = ()
    """Store-specific keyword arguments (``S3Config`` etc.), sorted."""
    client_options: tuple[tuple[str, Any], ...] = ()
    """obstore ``ClientConfig``, sorted."""
    prefix: str = ""
    """Key prefix the store is rooted at (``""``: the bucket/host root); see
    :func:`open_prefix_store`."""

    def build(self) -> Any:
        """Create a new obstore store (uncached; :func:`open_store` caches)."""
        config = dict(self.config)
        client = dict(self.client_options)
        if self.prefix:
            # a prefix store is called by zarr directly, with no RetryPolicy around it:
            # obstore's own retries (settings.retries) handle 5xx, 429 and resets
            retry = _prefix_retry()
            if self.scheme in ("http", "https"):
                return HTTPStore(
                    f"{self.root.rstrip('/')}/{quote(self.prefix)}",
                    client_options=client,
                    retry_config=retry,
                )
            if self.scheme == "file":
                return LocalStore(prefix=self.prefix)
            config["prefix"] = self.prefix
        else:
            retry = _NO_RETRY
        if self.scheme == "file":
            return LocalStore()
        if self.scheme == "memory":
            if self.prefix:
                raise ValidationError("memory:// stores cannot be rooted at a prefix")
            return MemoryStore()
        if self.scheme in ("http", "https"):
            return HTTPStore(self.root, client_options=client, retry_config=retry)
        if self.scheme == "s3":
            return S3Store(self.root, client_options=client, retry_config=retry, **config)
        if self.scheme == "gs":
            return GCSStore(self.root, client_options=client, retry_config=retry, **config)
        if self.scheme in _AZURE:
            return AzureStore.from_url(
                f"{self.scheme}://{self.root}",
                client_options=client,
                retry_config=retry,
                **config,
            )
        raise ValidationError(f"unsupported store scheme {self.scheme!r}")


def _prefix_retry() -> dict[str, Any]:
    """obstore's retry config for prefix stores: ``settings.retries`` retries."""
    from ..config import get_settings

    return {"max_retries": get_settings().retries, "retry_timeout": timedelta(minutes=3)}


def _freeze(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    items = tuple(sorted(mapping.items()))
    try:
        hash(items)
    except TypeError as exc:
        raise ValidationError(f"store options must be hashable values: {exc}") from None
    return items


def https_to_s3(url: str) -> tuple[str, str | None] | None:
    """``(s3://bucket/key, region)`` for an S3 HTTPS URL, else ``None``.

    Recognises virtual-hosted (``bucket.s3.region.amazonaws.com/key``) and path-style
    (``s3.region.amazonaws.com/bucket/key``) URLs; presigned URLs are left alone.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.query:
        return None
    host = (parts.hostname or "").lower()
    key = unquote(parts.path).lstrip("/")
    if m := _S3_VHOST.match(host):
        return f"s3://{m['bucket']}/{key}", m["region"]
    if (m := _S3_PATH.match(host)) and "/" in key:
        bucket, _, key = key.partition("/")
        return f"s3://{bucket}/{key}", m["region"]
    return None


def s3_to_https(url: str, region: str | None = None) -> str:
    """``https://bucket.s3.region.amazonaws.com/key`` for ``s3://bucket/key``."""
    parts = urlsplit(url)
    if parts.scheme not in ("s3", "s3a"):
        raise ValidationError(f"not an s3:// URL: {url!r}")
    host = (
        f"{parts.netloc}.s3.{region}.amazonaws.com"
        if region
        else f"{parts.netloc}.s3.amazonaws.com"
    )
    return f"https://{host}/{quote(parts.path.lstrip('/'))}"


def _env(*names: str) -> str | None:
    for name in names:
        if value := os.environ.get(name):
            return value
    return None


def _aws_has_credentials() -> bool:
    return bool(
        _env(
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        )
    )


def _s3_spec(
    bucket: str, region: str | None, cfg: CloudConfig, options: Mapping[str, Any], client: dict
) -> StoreSpec:
    config: dict[str, Any] = {}
    # explicit, so the cache key follows the environment and client_options keep allow_http
    if endpoint := _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        config["endpoint"] = endpoint
        if endpoint.startswith("http://"):
            client.setdefault("allow_http", True)
    if (_env("AWS_ALLOW_HTTP") or "").lower() in _TRUE:
        client.setdefault("allow_http", True)
    if region or (region := _env("AWS_REGION", "AWS_DEFAULT_REGION")):
        config["region"] = region
    payer = (_env("AWS_REQUEST_PAYER", "AWS_REQUESTER_PAYS") or "").lower()
    if cfg.requester_pays or payer in (*_TRUE, "requester"):
        config["request_payer"] = True
    skip = cfg.skip_signature
    if skip is None:
        env_skip = _env("AWS_SKIP_SIGNATURE")
        skip = env_skip.lower() in _TRUE if env_skip else not _aws_has_credentials()
    if skip:
        config["skip_signature"] = True
    config.update(options)
    return StoreSpec("s3", bucket, _freeze(config), _freeze(client))


def _gcs_spec(bucket: str, cfg: CloudConfig, options: Mapping[str, Any], client: dict) -> StoreSpec:
    config: dict[str, Any] = {}
    skip = cfg.skip_signature
    if skip is None:
        skip = not _env(
            "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_KEY"
        )
    if skip:
        config["skip_signature"] = True
    config.update(options)
    return StoreSpec("gs", bucket, _freeze(config), _freeze(client))


def resolve_url(
    url: str | os.PathLike[str],
    *,
    cloud_config: CloudConfig | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[StoreSpec, str]:
    """Describe the store for ``url`` and the path inside it, without building anything.

    Args:
        url: ``http(s)://``, ``s3://``, ``gs://``, ``az://``/``abfs://``, ``file://``,
            ``memory://name/key`` or a local path.
        cloud_config: URL rewrites and store settings.
        options: Store-specific settings (e.g. ``{"region": "eu-central-1"}``), passed
            to the store constructor; part of the cache key.

    Returns:
        ``(spec, path)``.
    """
    cfg = cloud_config or CloudConfig()
    options = options or {}
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    url = cfg.rewrite(url)
    client = {**_client_defaults(), **cfg.client_options}
    if "://" not in url:
        return StoreSpec("file", ""), str(Path(url).expanduser().resolve())
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return StoreSpec("file", ""), unquote(parts.path)
    if scheme == "memory":
        return StoreSpec("memory", parts.netloc), parts.path.lstrip("/")
    if scheme in ("s3", "s3a", "gs", "gcs", *_AZURE):
        # an object key is everything after the bucket, '#' and '?' included (as the
        # AWS CLI and GDAL's /vsis3/ read it): not a URL path with a query or fragment
        bucket, _, key = url.split("://", 1)[1].partition("/")
        if scheme in ("s3", "s3a"):
            return _s3_spec(bucket, None, cfg, options, client), key.lstrip("/")
        if scheme in ("gs", "gcs"):
            return _gcs_spec(bucket, cfg, options, client), key.lstrip("/")
        return StoreSpec(scheme, bucket, _freeze(dict(options)), _freeze(client)), key.lstrip("/")
    if scheme in ("http", "https"):
        if cfg.s3_https_as_s3 and (s3 := https_to_s3(url)):
            s3_url, region = s3
            bucket, _, key = s3_url[len("s3://") :].partition("/")
            return _s3_spec(bucket, region, cfg, options, client), key
        if scheme == "http":
            client.setdefault("allow_http", True)
        if parts.query:  # signed URL: obstore keeps the query only on the store's base URL
            return StoreSpec(scheme, url, _freeze(dict(options)), _freeze(client)), ""
        origin = f"{scheme}://{parts.netloc}"
        return StoreSpec(scheme, origin, _freeze(dict(options)), _freeze(client)), unquote(
            parts.path
        ).lstrip("/")
    raise ValidationError(f"unsupported URL scheme {scheme!r} in {url!r}")


_cache: OrderedDict[StoreSpec, Any] = OrderedDict()
_cache_lock = threading.Lock()
_owner_pid: int | None = None  # the process whose obstore (tokio) runtime is in use


def _forked() -> bool:
    """Whether this process was forked from one that had started obstore's runtime
    (which does not survive ``fork()``: a child that reuses it hangs forever)."""
    global _owner_pid
    pid = os.getpid()
    if _owner_pid is None:
        _owner_pid = pid
    return _owner_pid != pid


def _forked_store(spec: StoreSpec) -> Any:
    """A store that works in a forked child (see :mod:`._forked`), or a clear error."""
    from ._forked import ForkedHTTPStore, ForkedLocalStore

    if spec.scheme in ("http", "https"):
        return ForkedHTTPStore(spec.root, dict(spec.client_options))
    if spec.scheme == "file":
        return ForkedLocalStore()
    from ..errors import ConfigurationError

    raise ConfigurationError(
        f"tessellum's I/O runtime (obstore/tokio) was started in a parent process and "
        f"cannot read {spec.scheme}:// objects after fork() (http(s) and local files can): "
        "start worker processes with 'spawn' or 'forkserver' "
        "(e.g. DataLoader(..., multiprocessing_context='spawn'))"
    )


def open_store(
    url: str | os.PathLike[str],
    *,
    cloud_config: CloudConfig | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Any, str]:
    """The (cached) obstore store serving ``url`` and the object's path inside it.

    S3 reads ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_ALLOW_HTTP``, ``AWS_REQUEST_PAYER`` and
    ``AWS_SKIP_SIGNATURE`` from the environment, uses path-style requests, and sends
    unsigned requests when no credentials are configured. Stores retry nothing on their
    own: the read functions apply a :class:`~tessellum.store.RetryPolicy`.

    Args:
        url: See :func:`resolve_url`.
        cloud_config: URL rewrites and store settings.
        options: Store-specific settings passed to the store constructor.

    Returns:
        ``(store, path)``; stores are shared by every URL with the same spec. In a
        process forked after obstore started (a ``DataLoader`` worker under the default
        ``fork`` start method), http(s) and local files get stores that do not use
        obstore's runtime, which does not survive ``fork()``; other schemes raise
        :class:`~tessellum.errors.ConfigurationError`.
    """
    spec, path = resolve_url(url, cloud_config=cloud_config, options=options)
    return _cached_store(spec), path


def open_prefix_store(
    url: str | os.PathLike[str],
    *,
    cloud_config: CloudConfig | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """The (cached) obstore store rooted at the folder/prefix ``url`` names.

    The same URL resolution as :func:`open_store` (environment, ``cloud_config``), but
    keys are relative to ``url``: what a Zarr store at ``s3://bucket/dir/a.zarr`` needs
    (a library given a bucket-level store writes parent metadata up to the bucket root).
    Unlike :func:`open_store`'s stores, these retry transient failures themselves
    (``settings.retries`` times, obstore's backoff): their callers (zarr) do not.
    """
    spec, path = resolve_url(url, cloud_config=cloud_config, options=options)
    path = path.rstrip("/") if spec.scheme == "file" else path.strip("/")
    if spec.scheme in ("http", "https") and "?" in spec.root:  # a signed URL
        raise ValidationError(f"a signed URL cannot be opened as a store prefix: {url!r}")
    if path:
        spec = replace(spec, prefix=path)
    return _cached_store(spec)


def _cached_store(spec: StoreSpec) -> Any:
    """The cached store of ``spec`` (built on first use)."""
    if _forked():
        if spec.prefix:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"{spec.scheme}:// stores rooted at a prefix are not available after "
                "fork(): start worker processes with 'spawn' or 'forkserver'"
            )
        return _forked_store(spec)
    with _cache_lock:
        store = _cache.get(spec)
        if store is not None:
            _cache.move_to_end(spec)
            return store
    retain_freed_heap()  # response buffers reused without page faults (once per process)
    store = spec.build()  # outside the lock: building may read files or the environment
    with _cache_lock:
        store = _cache.setdefault(spec, store)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return store


async def open_store_async(
    url: str | os.PathLike[str],
    *,
    cloud_config: CloudConfig | None = None,
    options: Mapping[str, Any] | None = None,
    signer: UrlSigner | None = None,
) -> tuple[Any, str]:
    """:func:`open_store` after signing ``url`` with ``signer`` (e.g. a SAS-token signer)."""
    if signer is not None:
        url = await signer.sign(os.fspath(url))
    return open_store(url, cloud_config=cloud_config, options=options)


def clear_store_cache() -> None:
    """Forget every cached store (e.g. after credentials changed)."""
    with _cache_lock:
        _cache.clear()


def describe_url(store: Any, path: str) -> str:
    """A URL naming ``path`` in ``store``, for error messages (best effort)."""
    if hasattr(store, "url_of"):  # the stores of a forked process (._forked)
        return str(store.url_of(path))
    if isinstance(store, HTTPStore):
        base = store.url
        return f"{base.rstrip('/')}/{path}" if path else base
    if isinstance(store, S3Store):
        return f"s3://{store.config.get('bucket', '')}/{path}"
    if isinstance(store, GCSStore):
        return f"gs://{store.config.get('bucket', '')}/{path}"
    if isinstance(store, AzureStore):
        return f"az://{store.config.get('container_name', '')}/{path}"
    if isinstance(store, LocalStore):
        prefix = store.prefix
        return (prefix / path).as_uri() if prefix else Path("/", path).as_uri()
    if isinstance(store, MemoryStore):
        return f"memory:///{path}"
    return f"{type(store).__name__}:{path}"
