"""The embedded default's Kinesis API: kinesalite, a Kinesis server on LevelDB, run as a subprocess.

kinesalite (npm ``kinesalite@3.3.3``) keeps its streams in a LevelDB directory (``--path``), so
records survive a SIGKILL and a restart on the same directory; moto's server keeps them in memory
only. It needs Node.js and npm: the first start installs it with ``npm install`` into a cache
directory shared by every home (``~/.cache/pintrest/kinesalite-3.3.3``, or under
``$XDG_CACHE_HOME``), after which starting it needs no network.

Throughput through boto3, measured once on a 2-core machine shared with other work (load 1.5-3),
4,000 records of ~280 bytes, PutRecords of 500, GetRecords of up to 10,000, 1 or 3 shards; ranges
over four runs each::

                        put (rec/s)      get (rec/s)      records after a restart
    kinesalite 3.3.3    7,300-14,500    14,800-23,000     all (LevelDB on disk)
    moto 5.2.5 server   5,000-15,000     6,700-17,400     none (in memory)

Neither limits a laptop's pipeline; kinesalite is chosen for its durability. It takes ~2 s to
start (Node.js and LevelDB).

Differences from AWS worth knowing (the Spark source in ``spark_source`` copes with them):
sequence numbers are long decimal strings that increase within a shard (compare them with
``int()``); ``MillisBehindLatest`` is always 0 on an open shard; the shards a SplitShard or
MergeShards creates start one second in the future, so records put into them within that second
carry an ``ApproximateArrivalTimestamp`` up to a second ahead of the clock; a GetShardIterator
AT_TIMESTAMP later than a shard's last record never answers; ``ListShards`` answers every shard in
one page; there are no throughput limits, and iterators expire after five minutes as on AWS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from filelock import FileLock

log = logging.getLogger(__name__)

KINESALITE_VERSION = "3.3.3"
DEFAULT_PORT = 4567
# kinesalite refuses to create shards past this many in all its streams together (AWS's default
# account limit is 500 in the big regions); a local server has no reason to refuse.
SHARD_LIMIT = 10_000


class KinesaliteUnavailable(RuntimeError):
    """kinesalite cannot be installed or started (no Node.js or npm, a failed install, a busy port)."""


def default_install_dir() -> Path:
    """Where kinesalite is installed: a user cache directory shared by every PINTREST_HOME."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pintrest" / f"kinesalite-{KINESALITE_VERSION}"


def install_kinesalite(install_dir: str | os.PathLike | None = None) -> Path:
    """The path of kinesalite's ``cli.js``, installed with npm into ``install_dir`` on first use.

    Concurrent callers (two test sessions, a run and the UI) wait for one another on a lock file;
    a finished install is marked by a stamp file, so an interrupted one is redone.
    """
    root = Path(install_dir) if install_dir is not None else default_install_dir()
    cli = root / "node_modules" / "kinesalite" / "cli.js"
    stamp = root / ".installed"
    if stamp.exists() and cli.exists():
        return cli
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise KinesaliteUnavailable(
            "the local Kinesis server (kinesalite) needs Node.js and npm on the PATH: "
            "install them (e.g. `apt-get install nodejs npm`) or point the project at a real Kinesis"
        )
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".install.lock", thread_local=False):
        if stamp.exists() and cli.exists():
            return cli
        result = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(root),
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--loglevel=error",
                f"kinesalite@{KINESALITE_VERSION}",
            ],
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not cli.exists():
            raise KinesaliteUnavailable(
                f"`npm install kinesalite@{KINESALITE_VERSION}` into {root} failed "
                f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}"
            )
        stamp.write_text(KINESALITE_VERSION + "\n")
    return cli


class LocalKinesis:
    """A kinesalite server on ``127.0.0.1:port`` keeping its streams in ``data_dir``.

    ``start()`` installs kinesalite if needed, starts it and returns once it answers; ``stop()``
    ends it (SIGTERM, then SIGKILL after ``timeout``); ``kill()`` crashes it. Also a context
    manager. Its output goes to ``log_file`` (default: ``<data_dir>.log`` beside the data
    directory). A server started again on the same ``data_dir`` finds every stream and record it
    had, even after a SIGKILL.

    ``pid_file``: where its process id is kept while it runs (``stop()`` removes it), so that
    ``start()`` first ends a kinesalite that an owner killed without stopping it left running on
    the same ``data_dir`` (``end_orphan``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        port: int = DEFAULT_PORT,
        *,
        host: str = "127.0.0.1",
        install_dir: str | os.PathLike | None = None,
        log_file: str | os.PathLike | None = None,
        pid_file: str | os.PathLike | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.port = int(port)
        self.host = host
        self.install_dir = install_dir
        self.log_file = Path(log_file) if log_file is not None else self.data_dir.with_name(self.data_dir.name + ".log")
        self.pid_file = Path(pid_file) if pid_file is not None else None
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> Self:
        if self.running:
            return self
        if self.pid_file is not None:
            end_orphan(self.pid_file, self.data_dir)
        cli = install_kinesalite(self.install_dir)
        node = shutil.which("node")
        if node is None:
            raise KinesaliteUnavailable("the local Kinesis server (kinesalite) needs Node.js (`node`) on the PATH")
        if _answers(self.endpoint_url):
            raise KinesaliteUnavailable(f"{self.endpoint_url} is already taken by another server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        args = [
            node,
            "--require",
            str(_abort_guard(cli)),
            str(cli),
            "--port",
            str(self.port),
            "--path",
            str(self.data_dir),
            "--createStreamMs",
            "0",
            "--deleteStreamMs",
            "0",
            "--updateStreamMs",
            "0",
            "--shardLimit",
            str(SHARD_LIMIT),
        ]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches its owner, which stops it
            )
        deadline = time.monotonic() + timeout
        while not _answers(self.endpoint_url):
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise KinesaliteUnavailable(
                    f"kinesalite exited with code {code} while starting on {self.endpoint_url}: {_tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise KinesaliteUnavailable(
                    f"kinesalite did not answer on {self.endpoint_url} within {timeout:.0f} s: {_tail(self.log_file)}"
                )
            time.sleep(0.05)
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.process.pid}\n")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self.pid_file is not None:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def kill(self) -> None:
        """End it abruptly (SIGKILL), as a crash would; ``start()`` brings it back with its records."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalKinesis({str(self.data_dir)!r}, port={self.port}, running={self.running})"


# Loopback requests never go through a proxy set in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# kinesalite throws from a request's 'error' handler when its client goes away in the middle of
# the request (a consumer stopped mid-call: ECONNRESET, "aborted"), and that ends the whole server.
# Loaded before it (`node --require`), this drops such a request alone; any other error still ends
# the server, as it would have.
ABORT_GUARD = """\
process.on('uncaughtException', function (err) {
  if (err && err.code === 'ECONNRESET') {
    console.error('kinesalite: dropped a request its client aborted')
    return
  }
  console.error((err && err.stack) || err)
  process.exit(1)
})
"""


def _abort_guard(cli: Path) -> Path:
    """The guard's file, beside kinesalite's installation (written once, atomically)."""
    guard = cli.parents[2] / "abort-guard.js"
    if not guard.exists() or guard.read_text() != ABORT_GUARD:
        partial = guard.with_name(f".{guard.name}.{os.getpid()}")
        partial.write_text(ABORT_GUARD)
        partial.replace(guard)
    return guard


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status: kinesalite rejects a bare GET)."""
    try:
        _DIRECT.open(url, timeout=0.5).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def end_orphan(pid_file: Path, data_dir: Path, timeout: float = 10.0) -> None:
    """End the kinesalite named in ``pid_file`` if it still runs on ``data_dir``: an owner (a
    gateway) killed before it could stop its kinesalite left it behind, holding the port and the data."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    command = _command_line(pid)
    if not command or "kinesalite" not in command or str(data_dir) not in command:
        return  # gone, or the pid now belongs to another process
    log.warning("ending kinesalite (pid %d) left running on %s by a gateway that was killed", pid, data_dir)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _command_line(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _command_line(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _command_line(pid):
            time.sleep(0.05)


def _command_line(pid: int) -> str | None:
    """The command line of a live process ``pid``, None if there is none (or only a zombie)."""
    if Path("/proc/self/cmdline").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    try:  # no /proc (macOS)
        result = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return result.stdout.strip() or None


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace").strip() or "(no output)"
    except OSError:
        return "(no output)"
