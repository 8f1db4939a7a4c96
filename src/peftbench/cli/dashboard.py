"""`peftbench app`: the interactive dashboard over result folders.

(The module is not called ``app``: that name in `peftbench.cli` is the Typer app.)
"""

from __future__ import annotations

from typing import Annotated

import typer

from peftbench.cli.options import ResultDirs, add_verb
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench app tournament-quick",
    "peftbench app tournament-quick results --port 0",
    "peftbench app tournament-quick --host 0.0.0.0 --port 8080",
]


def register(app: typer.Typer) -> None:
    """Add the `app` verb to ``app``."""
    add_verb(app, "app", app_, EXAMPLES)


def app_(
    dirs: ResultDirs,
    host: Annotated[str, typer.Option(
        help="address to bind (127.0.0.1: this machine only; 0.0.0.0: every network)")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0 = any free one)")] = 7860,
) -> None:
    """Serve the interactive dashboard (Gradio) over the given result folders.

    Gradio prints its address once it is up; Ctrl-C stops it."""
    from peftbench.optional import require

    require(["gradio", "plotly", "pandas"], "peftbench app (the dashboard)")
    from peftbench.analysis.app import serve

    check_port(host, port)
    try:
        serve(dirs, host=host, port=port)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def check_port(host: str, port: int) -> None:
    """Whether ``host:port`` can be bound now; a port in use or an address not of this
    machine is a `UserError` saying which option to change."""
    import errno
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") \
            from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: already in use on {host}; pick another with "
                                "--port N, or --port 0 for any free one") from None
            raise UserError(f"--host {host} --port {port}: cannot listen there "
                            f"({exc.strerror or exc})") from None
