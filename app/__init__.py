"""Thrifty."""

import os as _os

if _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus-client's multiprocess mode names each process's files by its pid; processes
    # of several containers sharing one directory (docker-compose) can have the same pid, so
    # the host name is part of the name too. Set before any metric is created.
    import socket as _socket

    from prometheus_client import values as _values

    _values.ValueClass = _values.MultiProcessValue(  # type: ignore[no-untyped-call]
        lambda: f"{_socket.gethostname().replace('_', '-')}-{_os.getpid()}"
    )
