"""Real local servers for tests and benchmarks: HTTP (nginx), S3 (moto), STAC APIs, latency.

Every server binds 127.0.0.1 on an ephemeral port, is a context manager (also
``start()``/``stop()``), keeps its config and logs in a temp dir, and is stopped at
interpreter exit if forgotten. A server whose binary or package is missing raises
:class:`ServerUnavailable` from ``start()``; tests turn it into a skip.

    >>> from tessellum.testing.servers import HttpServer, LatencyProxy
    >>> with HttpServer(data_dir) as http, LatencyProxy(http.url, delay_ms=20) as proxy:
    ...     ...
"""

from ._process import ServerUnavailable, free_port
from ._ranges import parse_multipart_byteranges, parse_range_header
from .http import HttpServer, RequestRecord, find_nginx
from .pgstac import PgStacServer, find_postgres_bin
from .proxy import LatencyProxy
from .s3 import S3Server
from .stac import RustacServer
from .wcs import WcsServer, find_mapserv

__all__ = [
    "HttpServer",
    "LatencyProxy",
    "PgStacServer",
    "RequestRecord",
    "RustacServer",
    "S3Server",
    "ServerUnavailable",
    "WcsServer",
    "find_mapserv",
    "find_nginx",
    "find_postgres_bin",
    "free_port",
    "parse_multipart_byteranges",
    "parse_range_header",
]
