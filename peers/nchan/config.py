"""The Nchan peer's nginx.conf: a pure function of :class:`NchanConfig`.

Everything nginx needs is generated here, nothing is read from ``/etc/nginx``: the module is loaded by its
path, nginx runs in the foreground (``daemon off``) under a master process, and its pid file, error log and
temporary directories live in one directory of the peer's own (``prefix``, nginx's ``-p``).

The locations, on ``127.0.0.1:<port>`` (channel names ``[A-Za-z0-9_.-]{1,64}``, as the lab's):

============================================  ==============================================================
``POST /channels/<c>/events``                 ``nchan_publisher http``: the body is delivered verbatim
``GET /channels/<c>/poll``                    long-poll subscriber (cursor: ``If-Modified-Since`` and
                                              ``If-None-Match``); held ``poll_timeout_s``, then ``408``
``GET /channels/<c>/interval``                interval-poll subscriber (``304`` at once when nothing is new)
``GET /channels/<c>/ws``                      WebSocket subscriber (``ws+meta.nchan`` for resumable ids)
``GET /channels/<c>/sse``                     EventSource subscriber (``Last-Event-ID`` or ``?last_event_id=``)
``GET /healthz``                              ``200 ok``
``GET /nchan_status``                         ``nchan_stub_status`` (subscribers, messages, channels)
============================================  ==============================================================

Each subscriber location accepts only its own subscriber type. Why these settings (the peer's README says more):

- ``nchan_message_buffer_length`` is the lab's history (10,000 events per channel by default), not Nchan's
  default of 10, so a subscriber that resumes after a drop finds what it missed, as it would on the lab's server.
- ``nchan_subscriber_first_message oldest`` (Nchan 1.3.6's default, written out): a subscriber that gives no
  cursor starts at the oldest message kept, as the lab's ``after=0`` does.
- ``keepalive_requests`` is raised from nginx's 1,000 so a long-polling subscriber or the publisher keeps
  its connection for a whole run, as on the lab's server.
- Only the long-poll location has a subscriber timeout; the streaming ones are held for as long as they last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHANNEL", "MODULE_PATH", "NchanConfig", "render"]

MODULE_PATH = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
"""Where Debian's ``libnginx-mod-nchan`` installs the module."""
CHANNEL = "[A-Za-z0-9_.-]{1,64}"
"""A channel name, as the lab's server accepts it."""


@dataclass(frozen=True, slots=True)
class NchanConfig:
    """What the generated nginx.conf depends on."""

    port: int
    """The TCP port on 127.0.0.1."""
    prefix: Path
    """nginx's prefix directory (``-p``): pid file, error log and temporary directories go there."""
    workers: str = "1"
    """``worker_processes``: a number, or ``auto`` (one per core)."""
    history: int = 10_000
    """``nchan_message_buffer_length``: messages kept per channel."""
    message_timeout_s: int = 3600
    """``nchan_message_timeout``: seconds a message is kept (longer than any run)."""
    poll_timeout_s: int = 25
    """``nchan_subscriber_timeout`` of the long-poll location: how long a poll is held before ``408`` (0: until a
    message comes, Nchan's own default)."""
    module: Path = MODULE_PATH
    """The Nchan module's shared object."""
    user: str | None = None
    """``user`` for the worker processes; only meaningful when nginx starts as root (the peer passes root's own
    name then, so the workers can write to the prefix it created)."""
    worker_connections: int = 16384
    """``worker_connections``: connections per worker (subscribers, publishers and the probes)."""
    shared_memory: str = "256m"
    """``nchan_shared_memory_size``: where messages are kept (the lab's memory bus keeps 256 MiB in all)."""
    max_body: str = "8m"
    """``client_max_body_size``: the largest message accepted (the memory scenario publishes 1 MB)."""
    heartbeat_s: int = 15
    """``nchan_eventsource_ping_interval``: seconds between the comment lines an idle EventSource stream gets (the
    lab's SSE heartbeat; a client takes a silent stream for dead)."""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.workers != "auto" and not (self.workers.isdigit() and int(self.workers) > 0):
            raise ValueError(f"workers must be a positive number or 'auto', got {self.workers!r}")
        if self.history < 1:
            raise ValueError(f"history must be >= 1, got {self.history}")
        if self.message_timeout_s < 1:
            raise ValueError(f"message_timeout_s must be >= 1, got {self.message_timeout_s}")
        if self.heartbeat_s < 1:
            raise ValueError(f"heartbeat_s must be >= 1, got {self.heartbeat_s}")
        if self.poll_timeout_s < 0:
            raise ValueError(f"poll_timeout_s must be >= 0, got {self.poll_timeout_s}")


def _subscriber(suffix: str, kind: str, timeout_s: int, extra: str = "") -> str:
    return f"""
        location ~ "^/channels/({CHANNEL})/{suffix}$" {{
            nchan_subscriber {kind};
            nchan_channel_id $1;
            nchan_subscriber_timeout {timeout_s};{extra}
        }}
"""


def render(config: NchanConfig) -> str:
    """The complete nginx.conf for ``config``."""
    prefix = config.prefix
    user = f"user {config.user};\n" if config.user else ""
    sse = f"""
            nchan_eventsource_ping_interval {config.heartbeat_s};
            nchan_eventsource_ping_event "";
            nchan_eventsource_ping_comment "ping";"""
    return f"""# Generated by peers/nchan/config.py: do not edit; the peer writes it again at every start.
load_module {config.module};
daemon off;
master_process on;
worker_processes {config.workers};
{user}pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;

events {{
    worker_connections {config.worker_connections};
}}

http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {prefix / "client_body"};
    proxy_temp_path {prefix / "proxy"};
    fastcgi_temp_path {prefix / "fastcgi"};
    uwsgi_temp_path {prefix / "uwsgi"};
    scgi_temp_path {prefix / "scgi"};
    client_max_body_size {config.max_body};
    client_body_buffer_size {config.max_body};
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    tcp_nodelay on;

    nchan_shared_memory_size {config.shared_memory};
    nchan_message_buffer_length {config.history};
    nchan_message_timeout {config.message_timeout_s}s;

    server {{
        listen 127.0.0.1:{config.port};
        server_name localhost;
        nchan_subscriber_first_message oldest;

        location = /healthz {{
            return 200 "ok\\n";
        }}

        location = /nchan_status {{
            nchan_stub_status;
        }}

        location ~ "^/channels/({CHANNEL})/events$" {{
            nchan_publisher http;
            nchan_channel_id $1;
        }}
{_subscriber("poll", "longpoll", config.poll_timeout_s)}{_subscriber("interval", "intervalpoll", 0)}\
{_subscriber("ws", "websocket", 0)}{_subscriber("sse", "eventsource", 0, sse)}
        location / {{
            return 404;
        }}
    }}
}}
"""
