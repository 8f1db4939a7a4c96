"""The zygote's own side: ``python -m peftbench.engine.worker --serve FD`` imports the engine
once, then forks one worker per request and reports each one's exit status (the protocol is
described in `peftbench.engine.zygote`).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any, NoReturn

from peftbench.engine.worker import (
    EXIT_FAILED,
    EXIT_OK,
    WORKER_MODULE,
    die_with_parent,
    worker_command,
)
from peftbench.engine.zygote import MAX_MESSAGE, send_message, set_cmdline

#: what the zygote imports before it forks anything (``experiment`` imports the rest)
ENGINE_MODULES = ("torch", "transformers", "peft", "peftbench.engine.experiment")


def serve_main(argv: list[str]) -> int:
    """The zygote's entry point: ``--serve FD [--threads N] [--title-room PADDING]``."""
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    parser.add_argument("--serve", type=int, required=True, metavar="FD")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--title-room", default="", help="room for the runs' command lines")
    args = parser.parse_args(argv)
    set_cmdline(worker_command(["--serve", str(args.serve)]))
    die_with_parent()
    control = socket.socket(fileno=args.serve)
    for name in ENGINE_MODULES:
        importlib.import_module(name)
    if not send_message(control, {"ready": True}):
        return EXIT_FAILED
    return _Server(control, args.threads).serve()


class _Server:
    """The zygote's loop: fork a run per request, report each run's exit status."""

    def __init__(self, control: socket.socket, threads: int) -> None:
        self.control, self.threads = control, threads
        self.channels: dict[int, socket.socket] = {}  # child pid -> its run's channel
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()

    def serve(self) -> int:
        """Serve until the executor closes the control socket."""
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the fd wakes us
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.control, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        while True:
            events = self.selector.select()
            if any(key.fileobj is self.control for key, _ in events) and not self._fork_run():
                return EXIT_OK
            self._drain_wakeups()
            self._reap()

    def _fork_run(self) -> bool:
        """Fork a run for the next request; False when the executor is gone."""
        try:
            message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 3)
        except OSError:
            return False
        if not message or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return bool(message)
        out_fd, err_fd, channel_fd = fds
        channel = socket.socket(fileno=channel_fd)
        args = json.loads(message)["args"]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            channel.close()
            self._forget()
            _run_child(args, out_fd, err_fd, self.threads)
        os.close(out_fd)
        os.close(err_fd)
        self.channels[pid] = channel
        send_message(channel, {"pid": pid})
        return True

    def _forget(self) -> None:
        """In a child: drop the zygote's signal handling and descriptors."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.selector.close()
        for sock in (self.control, *self.channels.values()):
            sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        """Collect ended children and send each one's exit status on its channel."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            channel = self.channels.pop(pid, None)
            if channel is not None:
                send_message(channel, {"exit": os.waitstatus_to_exitcode(status)})
                channel.close()


def _run_child(args: list[str], out_fd: int, err_fd: int, threads: int) -> NoReturn:
    """In a forked child: become a worker process running ``args``, then exit."""
    code = EXIT_FAILED
    try:
        os.setsid()
        die_with_parent()
        for fd, target in ((out_fd, 1), (err_fd, 2)):
            os.dup2(fd, target)
            os.close(fd)
        set_cmdline(worker_command(args))
        sys.argv = [sys.argv[0], *args]
        if threads:
            import torch

            torch.set_num_threads(threads)
        from peftbench.engine.worker import main

        code = main(args)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
    finally:
        _exit(code)


def _exit_code(code: Any) -> int:
    """The exit status the interpreter gives ``SystemExit(code)``."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return EXIT_FAILED


def _exit(code: int) -> NoReturn:
    """End a child as an interpreter ends: exit handlers run, output flushed."""
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
