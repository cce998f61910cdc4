"""Private database servers for the tests: MariaDB and PostgreSQL from the installed binaries.

Each server gets a fresh temporary directory (data, Unix socket, log), a free loopback port and
its own user with a password, and is stopped and deleted afterwards. It is never a system service
and never a server the user already runs. The servers also stop when the process that started them
dies (a parent-death signal), so a killed test run leaves none behind.

As root, the servers run as the packages' system users (``mysql``, ``postgres``; ``nobody`` if
those do not exist), since postgres refuses to run as root; otherwise as the current user.

    with MariaDB() as server:
        engine = sqlalchemy.create_engine(server.url)

``start()`` raises ``NotInstalled`` (its message names the command that installs the binaries)
when the binaries are missing, and ``RuntimeError`` (with the end of the server's log) when the
server does not start.
"""

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pymysql

from pintrest_assets_tests.net import free_port

INSTALL_COMMAND = "sudo make test-system"

# Debian puts mariadbd in /usr/sbin, which is not on every user's PATH, and the PostgreSQL
# binaries in /usr/lib/postgresql/<version>/bin, which is on nobody's.
SBIN_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"]
POSTGRES_DIRS = "/usr/lib/postgresql/*/bin"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it


class NotInstalled(Exception):
    """The server's binaries are not installed."""


def _path_dirs() -> list[str]:
    return [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]


def _find(names: list[str], dirs: list[str]) -> Path | None:
    """The first directory that holds all the executables ``names``."""
    for directory in dirs:
        if all(os.access(os.path.join(directory, name), os.X_OK) for name in names):
            return Path(directory)
    return None


class Server:
    """A server process in its own temporary directory: subclasses say how to create and start it."""

    kind = ""  # for the directory's name and messages
    system_user = ""  # who runs the server when the tests run as root
    stop_signal = signal.SIGTERM
    _connect_errors: tuple[type[Exception], ...] = (OSError,)  # what _admin_connect raises until ready

    def __init__(self, database: str = "pintrest_test", user: str = "pintrest"):
        self.database = database
        self.user = user
        self.password = secrets.token_hex(12)
        self.port: int | None = None
        self.directory: Path | None = None
        self.bin: dict[str, Path] = {}  # the binaries' paths by name
        self._process: subprocess.Popen | None = None

    # To be provided by each server.

    def _binaries(self) -> dict[str, Path]:
        """The binaries' paths by name, or NotInstalled."""
        raise NotImplementedError

    def _initialise(self) -> None:
        """Creates the data directory."""
        raise NotImplementedError

    def _command(self) -> list[str]:
        """The server's command line, for ``self.port``."""
        raise NotImplementedError

    def _admin_connect(self):
        """A DB-API connection with full rights, or an exception while the server is not ready."""
        raise NotImplementedError

    def _create_user_and_database(self, conn) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the test database, as the test user over TCP."""
        raise NotImplementedError

    # The life cycle.

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self) -> None:
        self.bin = self._binaries()
        self.directory = Path(tempfile.mkdtemp(prefix=f"pintrest-{self.kind}-"))
        try:
            if os.geteuid() == 0:
                account = self._account()
                os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._initialise()
            self._run_server()
            conn = self._admin_connect()
            try:
                self._create_user_and_database(conn)
            finally:
                conn.close()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops the server (cleanly, else by force) and deletes its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    @property
    def log(self) -> Path:
        """The server's output (the set-up commands' goes to setup.log)."""
        return self.directory / "server.log"

    def _run_server(self) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            with open(self.log, "wb") as log:
                self._process = subprocess.Popen(
                    self._as_server_user(self._command()),
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # no Ctrl-C from the terminal: stop() shuts it down
                )
            if self._wait_until_ready():
                return
            self._kill()
            if "Address already in use" in _tail(self.log) and attempt < PORT_ATTEMPTS:
                continue
            raise RuntimeError(f"{self.kind} did not start on port {self.port}:\n{_tail(self.log)}")

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                self._admin_connect().close()
                return True
            except self._connect_errors:
                time.sleep(0.1)
        return False

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.system_user)
        except KeyError:
            return pwd.getpwnam("nobody")

    def _as_server_user(self, command: list[str]) -> list[str]:
        """``command`` as the server's user, killed (SIGTERM) when this process dies."""
        setpriv = shutil.which("setpriv")
        if setpriv is None:  # util-linux, on every Debian; elsewhere no parent-death signal
            if os.geteuid() == 0:
                raise RuntimeError("setpriv (util-linux) is needed to run the test servers as root")
            return command
        prefix = [setpriv, "--pdeathsig", "TERM"]
        if os.geteuid() == 0:
            account = self._account()
            prefix += [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
        return prefix + command

    def _run(self, command: list[str]) -> None:
        """Runs a set-up command as the server's user; its output goes to setup.log."""
        setup_log = self.directory / "setup.log"
        with open(setup_log, "ab") as log:
            result = subprocess.run(
                self._as_server_user(command),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({result.returncode}):\n{_tail(setup_log)}")


class MariaDB(Server):
    """A private mariadbd: root over the Unix socket, the test user with a password over TCP."""

    kind = "mariadb"
    system_user = "mysql"
    _connect_errors = (pymysql.MySQLError, OSError)

    def _binaries(self) -> dict[str, Path]:
        # mariadb-install-db is in /usr/bin, mariadbd in /usr/sbin: each is looked up on its own.
        dirs = _path_dirs() + SBIN_DIRS
        found = {name: _find([name], dirs) for name in ("mariadbd", "mariadb-install-db")}
        if None in found.values():
            raise NotInstalled(f"mariadbd is not installed (mariadb-server): run `{INSTALL_COMMAND}`")
        return {name: directory / name for name, directory in found.items()}

    @property
    def socket(self) -> Path:
        return self.directory / "mariadbd.sock"

    def _initialise(self) -> None:
        self._run(
            [
                str(self.bin["mariadb-install-db"]),
                "--no-defaults",
                "--auth-root-authentication-method=normal",  # root: a (blank) password, not the OS user
                "--skip-test-db",
                f"--datadir={self.directory / 'data'}",
            ]
        )

    def _command(self) -> list[str]:
        return [
            str(self.bin["mariadbd"]),
            "--no-defaults",
            f"--datadir={self.directory / 'data'}",
            f"--socket={self.socket}",
            f"--pid-file={self.directory / 'mariadbd.pid'}",
            f"--tmpdir={self.directory}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
        ]

    def _admin_connect(self):
        return pymysql.connect(unix_socket=str(self.socket), user="root", password="", connect_timeout=2)

    def _create_user_and_database(self, conn) -> None:
        # The user may create and drop any database named <database>* (the tests' scratch databases).
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER '{self.user}'@'{host}' IDENTIFIED BY %s", (self.password,))
                cur.execute(f"GRANT ALL PRIVILEGES ON `{self.database}%`.* TO '{self.user}'@'{host}'")
        conn.commit()

    @property
    def url(self) -> str:
        return f"mysql+pymysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}?charset=utf8mb4"


class PostgreSQL(Server):
    """A private postgres: the superuser ``postgres`` and the test user, both with a password."""

    kind = "postgresql"
    system_user = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: ends the sessions still open
    _connect_errors = (psycopg2.Error, OSError)

    def _binaries(self) -> dict[str, Path]:
        # initdb and postgres from one directory: one version. The newest Debian one after PATH.
        versions = sorted(glob.glob(POSTGRES_DIRS), key=_version, reverse=True)
        found = _find(["initdb", "postgres"], _path_dirs() + versions)
        if found is None:
            raise NotInstalled(f"PostgreSQL (initdb, postgres) is not installed: run `{INSTALL_COMMAND}`")
        return {name: found / name for name in ("initdb", "postgres")}

    def _initialise(self) -> None:
        password_file = self.directory / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            account = self._account()
            os.chown(password_file, account.pw_uid, account.pw_gid)
        self._run(
            [
                str(self.bin["initdb"]),
                f"--pgdata={self.directory / 'data'}",
                "--username=postgres",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",  # throwaway data
                "--no-instructions",
            ]
        )
        password_file.unlink()

    def _command(self) -> list[str]:
        return [
            str(self.bin["postgres"]),
            "-D", str(self.directory / "data"),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.directory}",
        ]  # fmt: skip

    def _admin_connect(self):
        return psycopg2.connect(
            host=str(self.directory),  # the Unix socket
            port=self.port,
            user="postgres",
            password=self.password,
            dbname="postgres",
            connect_timeout=2,
        )

    def _create_user_and_database(self, conn) -> None:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            # CREATEDB: the tests make a scratch database each.
            cur.execute(f'CREATE ROLE "{self.user}" LOGIN CREATEDB PASSWORD %s', (self.password,))
            cur.execute(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _version(directory: str) -> tuple:
    """(15,) from /usr/lib/postgresql/15/bin, for picking the newest."""
    name = Path(directory).parent.name
    return tuple(int(p) for p in name.split(".") if p.isdigit())
