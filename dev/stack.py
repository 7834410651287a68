"""The local stack without Docker: a real Apache Kafka broker (KRaft) and a real PostgreSQL server.

    python -m dev.stack up   [--name NAME] [--secure]   start both (or reuse KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL)
    python -m dev.stack env  [--name NAME] [--secure]   print the environment to talk to it (eval-able)
    python -m dev.stack status [--name NAME]
    python -m dev.stack down [--name NAME]   stop both and delete their data

Kafka comes from Apache Kafka's own jars on Maven Central (resolved once with Maven into ~/.cache/carsys-ingest) and
runs with ``java`` as a single KRaft broker+controller on 127.0.0.1. PostgreSQL is a throwaway cluster made with the
installed server binaries (initdb/pg_ctl). Data lives under /tmp/carsys-ingest-stack/NAME, outside the repository.

``--secure`` adds what production has (docs/security.md): a SASL_SSL listener (SCRAM-SHA-512, users created when the
storage is formatted) next to the plaintext one, and PostgreSQL with ``ssl=on``; both use a throwaway CA and server
certificate made for the run (dev/certs.py). ``env --secure`` prints the worker's variables for the secured listener
and a ``sslmode=verify-full`` DSN.

Standard library only (``--secure`` imports dev/certs.py, which needs the virtualenv): it runs before the virtualenv
exists, and the tests import it (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

KAFKA_VERSION = "4.1.1"
REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "carsys-ingest"
STATE_ROOT = Path("/tmp/carsys-ingest-stack")


class StackError(RuntimeError):
    """A service could not be started; the message says what is missing and how to get it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _need(tool: str, how: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StackError(f"`{tool}` not found on PATH: {how}")
    return path


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def _terminate(pid: int | None, timeout_s: float = 30.0) -> None:
    if not _pid_alive(pid):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------------- Kafka


def kafka_libs() -> Path:
    """Kafka's jars, resolved from Maven Central once and cached outside the work tree."""
    libs = CACHE / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / ".complete").exists():
        return libs
    _need("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = _need("mvn", "install Maven (Debian: apt-get install maven)")
    print(
        f"stack: resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs} ...",
        file=sys.stderr,
    )
    shutil.rmtree(libs, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(REPO / "dev/kafka/pom.xml"), f"-Dkafka.version={KAFKA_VERSION}"]
    cmd += ["dependency:copy-dependencies", f"-DoutputDirectory={libs}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"Maven could not resolve Kafka's jars:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (libs / ".complete").touch()
    return libs


SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass
class KafkaNode:
    dir: str
    port: int
    controller_port: int
    pid: int | None = None
    # The secured listener (SASL_SSL, SCRAM-SHA-512), when started with --secure.
    sasl_port: int | None = None
    tls_bundle: str | None = None  # PEM: the broker's key and certificate
    scram_users: dict[str, str] | None = None  # name -> password, created when the storage is formatted

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def _secure_props(self) -> dict[str, str]:
        if not self.sasl_port:
            return {}
        listener = "listener.name.sasl_ssl"
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},SASL_SSL://127.0.0.1:{self.sasl_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},SASL_SSL://127.0.0.1:{self.sasl_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"{listener}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{listener}.ssl.keystore.type": "PEM",
            f"{listener}.ssl.keystore.location": str(self.tls_bundle),
        }

    def _write_config(self) -> Path:
        d = Path(self.dir)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(d / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A test stack: rebalances should not wait for stragglers that will never come.
            "group.initial.rebalance.delay.ms": "0",
        }
        props.update(self._secure_props())
        path = d / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (d / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.file.type = File\nappender.file.name = FILE\n"
            f"appender.file.fileName = {d / 'server.log'}\n"
            "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = FILE\n"
        )
        return path

    def format(self, libs: Path) -> None:
        config = self._write_config()
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        cmd = [
            "java",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            # One argument: a random id starting with "-" would otherwise be read as an option (1 run in 64).
            f"--cluster-id={cluster_id}",
            "-c",
            str(config),
        ]
        for user, password in (self.scram_users or {}).items():
            # Kafka's own way to create SCRAM users on a KRaft cluster before it first starts.
            cmd += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")

    def start(self, libs: Path, timeout_s: float = 90.0) -> None:
        d = Path(self.dir)
        log = d / "server.log"
        log.unlink(missing_ok=True)
        cmd = ["java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
        cmd += [f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}", "-cp", f"{libs}/*"]
        cmd += ["kafka.Kafka", str(d / "server.properties")]
        with open(d / "stdout.log", "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = proc.pid
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"Kafka exited with {proc.returncode}; see {d / 'stdout.log'} and {log}")
            started = log.exists() and "Kafka Server started" in log.read_text(errors="replace")
            if started and _port_open(self.port) and (not self.sasl_port or _port_open(self.sasl_port)):
                return
            time.sleep(0.25)
        raise StackError(f"Kafka did not start within {timeout_s:.0f}s; see {log}")

    def stop(self) -> None:
        _terminate(self.pid)
        self.pid = None


# ---------------------------------------------------------------------------------------------- PostgreSQL


def pg_bin() -> Path:
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise StackError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin: "
            "install them (Debian: apt-get install postgresql)"
        )
    return Path(candidates[-1]).parent


def _as_pg_user() -> list[str]:
    # initdb and postgres refuse to run as root; run them as the distribution's postgres user.
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            "running as root and there is no 'postgres' user to run PostgreSQL as: useradd postgres"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PostgresNode:
    dir: str
    port: int
    fast: bool = False
    # ssl=on with this certificate and key (PEM), when started with --secure.
    ssl_cert: str | None = None
    ssl_key: str | None = None

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*_as_pg_user(), *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"{Path(args[0]).name} failed:\n{result.stdout}{result.stderr}")

    def init(self) -> None:
        data = Path(self.dir) / "data"
        data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(data, "postgres")
        self._run(
            str(pg_bin() / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=300"
        if self.fast:
            # Throwaway test data: durability buys nothing here and costs seconds per test module.
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        if self.ssl_cert and self.ssl_key:
            options += f" -c ssl=on -c ssl_cert_file={self.ssl_cert} -c ssl_key_file={self.ssl_key}"
        data, log = Path(self.dir) / "data", Path(self.dir) / "postgres.log"
        self._run(
            str(pg_bin() / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        data = Path(self.dir) / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(StackError):
                self._run(str(pg_bin() / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        self._run(str(pg_bin() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.dsn(name)


# -------------------------------------------------------------------------------------------------- Stack


@dataclass
class Stack:
    name: str
    kafka_bootstrap: str
    database_url: str
    kafka: KafkaNode | None = None
    postgres: PostgresNode | None = None
    ca_file: str | None = None  # the run's CA, when started with --secure

    @property
    def state_file(self) -> Path:
        return STATE_ROOT / self.name / "stack.json"

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "DATABASE_URL": self.database_url}

    def secure_env(self) -> dict[str, str]:
        """The worker's variables for the secured listener and a verify-full DSN (what --secure started)."""
        env = self.env()
        if self.kafka and self.kafka.sasl_port and self.kafka.scram_users:
            user, password = next(iter(self.kafka.scram_users.items()))
            env.update(
                KAFKA_BOOTSTRAP_SERVERS=self.kafka.sasl_bootstrap,
                KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                KAFKA_SASL_MECHANISM=SCRAM_MECHANISM,
                KAFKA_SASL_USERNAME=user,
                KAFKA_SASL_PASSWORD=password,
                KAFKA_SSL_CAFILE=str(self.ca_file),
            )
        if self.postgres and self.postgres.ssl_cert:
            env["DATABASE_URL"] = f"{self.database_url}?sslmode=verify-full&sslrootcert={self.ca_file}"
        return env

    def save(self) -> None:
        self.state_file.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, name: str) -> Stack | None:
        path = STATE_ROOT / name / "stack.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        kafka = KafkaNode(**raw.pop("kafka")) if raw.get("kafka") else None
        postgres = PostgresNode(**raw.pop("postgres")) if raw.get("postgres") else None
        raw.pop("kafka", None)
        raw.pop("postgres", None)
        return cls(**raw, kafka=kafka, postgres=postgres)

    def down(self) -> None:
        if self.kafka:
            self.kafka.stop()
        if self.postgres:
            self.postgres.stop("immediate")
        shutil.rmtree(STATE_ROOT / self.name, ignore_errors=True)


def _secure(root: Path, stack: Stack) -> None:
    """TLS material for the run, and the SCRAM user: attached to the nodes before they are started."""
    from dev.certs import make_server_tls  # needs the virtualenv (cryptography); only --secure pays for it

    tls = make_server_tls(root / "tls")
    stack.ca_file = str(tls.ca)
    if stack.postgres:
        if os.geteuid() == 0:  # PostgreSQL refuses a key file it does not own
            for path in (tls.key, tls.cert):
                shutil.chown(path, "postgres")
        stack.postgres.ssl_cert, stack.postgres.ssl_key = str(tls.cert), str(tls.key)
    if stack.kafka:
        stack.kafka.sasl_port = free_port()
        stack.kafka.tls_bundle = str(tls.bundle)
        stack.kafka.scram_users = {"carsys": uuid.uuid4().hex}


def up(
    name: str = "default", *, fast: bool = False, secure: bool = False, environ: dict[str, str] | None = None
) -> Stack:
    """Start PostgreSQL and Kafka (each unless already given in the environment) and return how to reach them."""
    env = dict(os.environ if environ is None else environ)
    existing = Stack.load(name)
    if existing:
        existing.down()
    root = STATE_ROOT / name
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE_ROOT, 0o1777)
    os.chmod(root, 0o755)
    stack = Stack(
        name=name,
        kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS", ""),
        database_url=env.get("DATABASE_URL", ""),
    )
    try:
        if not stack.database_url:
            stack.postgres = PostgresNode(dir=str(root / "pg"), port=free_port(), fast=fast)
        if not stack.kafka_bootstrap:
            stack.kafka = KafkaNode(dir=str(root / "kafka"), port=free_port(), controller_port=free_port())
        if secure:
            _secure(root, stack)
        if stack.postgres:
            stack.postgres.init()
            stack.postgres.start()
            stack.database_url = stack.postgres.create_database("carsys")
        if stack.kafka:
            libs = kafka_libs()
            (root / "kafka").mkdir()
            stack.kafka.format(libs)
            stack.kafka.start(libs)
            stack.kafka_bootstrap = stack.kafka.bootstrap
    except BaseException:
        stack.down()
        raise
    stack.save()
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "env", "status"])
    parser.add_argument("--name", default="default", help="several stacks can run side by side")
    parser.add_argument("--fast", action="store_true", help="PostgreSQL without fsync (tests)")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="up: add a SASL_SSL listener and PostgreSQL TLS; env: print their variables",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            stack = up(args.name, fast=args.fast, secure=args.secure)
            print(f"stack {args.name!r} is up:", file=sys.stderr)
            args.command = "env"
        stack_or_none = Stack.load(args.name)
        if stack_or_none is None:
            print(f"stack {args.name!r} is not running", file=sys.stderr)
            return 1 if args.command in ("env", "status") else 0
        stack = stack_or_none
        if args.command == "down":
            stack.down()
            print(f"stack {args.name!r} stopped", file=sys.stderr)
        elif args.command == "env":
            env = stack.secure_env() if args.secure else stack.env()
            print("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()), end="")
        else:
            alive = {
                "kafka": stack.kafka and _pid_alive(stack.kafka.pid),
                "postgres": stack.postgres is not None,
            }
            print(json.dumps({**stack.env(), "started_here": alive}, indent=2))
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
