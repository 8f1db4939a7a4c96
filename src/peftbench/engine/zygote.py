"""Warm workers: a fork server ("zygote") that imports the engine once and forks each run.

Starting `peftbench.engine.worker` costs seconds of imports (torch, transformers, peft) before a
run does anything. The zygote, ``python -m peftbench.engine.worker --serve FD``, pays them once
and then forks one child per run. Each child is what a worker process is: its own process (own
memory figures, a crash kills only it), its own session and process group (a group kill stops
it), the worker's command line, output and exit codes; it dies with the zygote and the zygote
dies with the executor (``PR_SET_PDEATHSIG``).

The protocol, over Unix sockets that keep message boundaries (``SOCK_SEQPACKET``):

- executor -> zygote, on the zygote's control socket: ``{"args": [...]}`` (a worker's
  arguments) with three descriptors: the write ends of the run's stdout and stderr pipes and
  the zygote's end of a channel socket for this run;
- zygote -> executor, on the control socket once: ``{"ready": true}`` when its imports are done;
- zygote -> executor, on the run's channel: ``{"pid": N}`` right after the fork and
  ``{"exit": CODE}`` once the child is reaped (``CODE`` as `subprocess.Popen.returncode`).
  The channel closing without an exit message means the zygote died, and the run with it.

The zygote only imports: torch computes nothing before a fork (GNU OpenMP is not fork-safe once
used). Its environment carries the thread caps (``OMP_NUM_THREADS``...), so one zygote serves
one thread count, and each child also sets torch's thread count.

This module holds the protocol's two ends and the executor's side (`Zygote`, `WarmProcess`);
the zygote's own loop is `peftbench.engine.zygote_server`.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import threading
from typing import Any

from peftbench.engine.worker import worker_command

#: bytes of command line the zygote reserves so that each child can show a worker's
TITLE_ROOM = 4096
#: seconds to wait for the zygote's imports, and for its answer to a request
READY_TIMEOUT, REPLY_TIMEOUT = 300.0, 60.0
MAX_MESSAGE = 1 << 16


# --------------------------------------------------------------------------------------------
# Both ends


def set_cmdline(args: list[str]) -> bool:
    """Show ``args`` as this process's command line (``/proc/PID/cmdline``, ``ps``), within the
    bytes its original command line took (longer ones are cut); False where unsupported."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
    except (OSError, ValueError, IndexError):
        return False
    room = end - start
    if not 0 < room <= 1 << 20:
        return False
    data = b"\0".join(os.fsencode(arg) for arg in args)[:room - 1]
    ctypes.memmove(start, data.ljust(room, b"\0"), room)
    return True


def send_message(sock: socket.socket, message: dict[str, Any],
                 fds: list[int] | None = None) -> bool:
    """Send ``message`` (and descriptors ``fds``); False when the other end is gone."""
    try:
        if fds:
            socket.send_fds(sock, [json.dumps(message).encode()], fds)
        else:
            sock.send(json.dumps(message).encode())
    except OSError:
        return False
    return True


def receive_message(sock: socket.socket, timeout: float | None) -> dict[str, Any]:
    """The next message; {} when the other end is gone. Raises TimeoutError."""
    sock.settimeout(None if timeout is None else max(timeout, 1e-3))
    try:
        data = sock.recv(MAX_MESSAGE)
    except TimeoutError:
        raise
    except OSError:
        return {}
    return json.loads(data) if data else {}


# --------------------------------------------------------------------------------------------
# The executor's side


class WarmProcess:
    """A run forked by a zygote, with what supervision uses of `subprocess.Popen`: ``pid``,
    ``args``, ``stdout``/``stderr`` text streams, ``wait(timeout)`` and ``returncode``.

    ``zygote_lost`` is set when the zygote died before the run ended (the run died with it).
    """

    def __init__(self, pid: int, args: list[str], channel: socket.socket, out_fd: int,
                 err_fd: int) -> None:
        self.pid, self.args, self._channel = pid, args, channel
        self.stdout = open(out_fd, errors="replace")
        self.stderr = open(err_fd, errors="replace")
        self.returncode: int | None = None
        self.zygote_lost = False

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (negative: killed by that signal); `subprocess.TimeoutExpired` when
        the run is still going after ``timeout`` seconds."""
        if self.returncode is not None:
            return self.returncode
        try:
            message = receive_message(self._channel, timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(self.args, timeout) from None
        self._channel.close()
        if "exit" in message:
            self.returncode = int(message["exit"])
        else:
            self.zygote_lost = True
            self.returncode = -signal.SIGKILL
            _kill_run(self.pid)
        return self.returncode


def _kill_run(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Zygote:
    """The executor's handle on one zygote (runs with one thread count).

    Started on the first `spawn`, restarted when it has died (``max_starts`` times in all);
    `spawn` returns None when it cannot serve, and the caller starts a cold worker instead.
    The zygote is started from a thread of its own that lives as long as it does, because
    ``PR_SET_PDEATHSIG`` fires when the thread that started a process ends.
    """

    def __init__(self, threads: int | None, env: dict[str, str], *, max_starts: int = 3
                 ) -> None:
        self.threads, self.env, self.max_starts = threads, env, max_starts
        self.starts = 0
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The running zygote's process id (None before the first run or after it died)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def spawn(self, args: list[str]) -> WarmProcess | None:
        """Fork a worker with arguments ``args``; None when the zygote cannot serve."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                sent = self._ensure_ready() and self._request(
                    {"args": args}, [out_w, err_w, theirs.fileno()])
        finally:
            os.close(out_w)
            os.close(err_w)
            theirs.close()
        reply = self._reply(ours) if sent else {}
        if "pid" not in reply:
            ours.close()
            os.close(out_r)
            os.close(err_r)
            return None
        return WarmProcess(int(reply["pid"]), worker_command(args), ours, out_r, err_r)

    def close(self) -> None:
        """Stop the zygote (it has no runs left once the executor's runs have ended)."""
        with self._lock:
            self._stop()
            self.starts = self.max_starts

    def _ensure_ready(self) -> bool:
        if self._control is not None and self.pid is not None:
            return True
        self._stop()
        if self.starts >= self.max_starts:
            return False
        self.starts += 1
        return self._start()

    def _start(self) -> bool:
        """Start a zygote and wait until its imports are done."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = worker_command(["--serve", str(theirs.fileno()), "--threads",
                                  str(self.threads or 0), "--title-room", "." * TITLE_ROOM])
        started, box = threading.Event(), []
        threading.Thread(target=self._keep, args=(command, theirs.fileno(), started, box),
                         name="peftbench-zygote", daemon=True).start()
        started.wait()
        theirs.close()
        if not box:
            ours.close()
            return False
        self._control, self._proc = ours, box[0]
        try:
            ready = receive_message(ours, READY_TIMEOUT).get("ready")
        except TimeoutError:
            ready = False
        if not ready:
            self._stop()
        return bool(ready)

    def _keep(self, command: list[str], fd: int, started: threading.Event,
              box: list[subprocess.Popen]) -> None:
        """The zygote's parent thread: start it, then wait for it to end."""
        try:
            box.append(subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        pass_fds=(fd,), start_new_session=True, env=self.env))
        except OSError:
            pass
        finally:
            started.set()
        if box:
            box[0].wait()

    def _request(self, message: dict[str, Any], fds: list[int]) -> bool:
        assert self._control is not None
        if send_message(self._control, message, fds):
            return True
        self._stop()
        return False

    def _reply(self, channel: socket.socket) -> dict[str, Any]:
        """The zygote's answer to a request; a zygote that does not answer is stopped, so that
        no late run can start beside the cold worker that replaces it."""
        try:
            return receive_message(channel, REPLY_TIMEOUT)
        except TimeoutError:
            with self._lock:
                self._stop()
            return {}

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
