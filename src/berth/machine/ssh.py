"""The `ssh` driver: a machine is an existing Linux host reached over SSH, running one berthd.

create goes connect -> install -> configure -> start -> verify, each step one bounded ssh command:
- connect: log in (BatchMode: a wrong key fails in well under CONNECT_BUDGET);
- install: look for an engine. One that answers on the machine's socket is adopted as it is,
  never reinstalled or restarted (docker-machine's generic driver once wiped hosts by
  reinstalling a healthy engine); otherwise berthd is looked for in the machine's venv, at the
  same path as this berth's, then on PATH; missing, it is installed: host packages with apt-get,
  berth into a venv from a wheel copied with scp (this berth's own, or $BERTH_MACHINE_WHEEL);
- configure: the labels file berthd re-reads on SIGHUP, and `docker` (berth) for ssh:// clients;
- start: berthd under setsid with a pidfile, its log beside it;
- verify: the Engine API through ssh + `berth system dial-stdio`, labels as the file says.

Where berth lives on the host: the standard layout (socket /run/berth/berth.sock, data root
/var/lib/berth, berth's own files in /opt/berth), or everything under `install_dir`.

The engine URL is `ssh://user@host:port/<socket>`: the docker CLI runs `docker --host
unix://<socket> system dial-stdio` there, so no certificate depends on an address. Only what this
driver made is removed by `rm`: an adopted engine, or a data root that was not empty before, is
left as found (its berthd stopped only if this driver started it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

from berth.client.api import APIClient
from berth.client.errors import ClientError, DaemonUnreachable

from . import sshscripts as scripts
from .driver import STEP_TIMEOUT, MachineRecord, engine_flags, phase
from .model import MachineError, MachineSpec
from .sshconn import CONNECT_BUDGET, SSHTarget, parse_keys

INSTALL_TIMEOUT = 600.0  # apt-get and pip on a fresh host
MARKER = ".berth-machine"


def layout(spec: MachineSpec) -> dict[str, str]:
    """Paths on the host, from the spec alone (so `plan` and `remove` agree with `create`)."""
    root = spec.driver_options.get("install_dir")
    if root:
        root = root.rstrip("/") or "/"
        files, exec_root, data_root = root, f"{root}/run", f"{root}/data"
    else:
        files, exec_root, data_root = "/opt/berth", "/run/berth", "/var/lib/berth"
    return {
        "files": files, "venv": f"{files}/venv", "shim": f"{files}/bin/docker",
        "config_file": f"{files}/berthd.json", "log": f"{files}/berthd.log", "pidfile": f"{files}/berthd.pid",
        "exec_root": exec_root, "socket": f"{exec_root}/berth.sock",
        "data_root": spec.engine.data_root or data_root,
    }


def _labels_json(spec: MachineSpec) -> str:
    return json.dumps({"labels": spec.engine.label_list()})


class SSHDriver:
    name = "ssh"

    def __init__(self, state_root: str) -> None:
        self.state_root = state_root

    # --- reaching the host ----------------------------------------------------------------------

    def target(self, spec: MachineSpec, details: dict[str, Any] | None = None) -> SSHTarget:
        o = spec.driver_options
        mdir = os.path.join(self.state_root, spec.name)
        os.makedirs(mdir, mode=0o700, exist_ok=True)
        known = os.path.join(mdir, "known_hosts")
        if details and details.get("known_hosts") and not os.path.exists(known):  # imported from elsewhere
            with open(known, "w") as f:
                f.write(details["known_hosts"])
        key = o.get("identity_file")
        if key:
            key = os.path.abspath(os.path.expanduser(key))
        imported = os.path.join(mdir, "id_key")
        if (not key or not os.path.exists(key)) and os.path.exists(imported):
            key = imported
        return SSHTarget(spec.name, o["host"], int(o.get("port") or 22), o.get("user") or "root", key, known)

    def _target(self, record: MachineRecord) -> SSHTarget:
        return self.target(record.spec, record.details)

    def client(self, record: MachineRecord, timeout: float = STEP_TIMEOUT) -> APIClient:
        """An Engine API client through ssh and the machine's own `berth system dial-stdio` (not
        whatever `docker` the login finds), with this machine's key and known_hosts."""
        d = record.details
        t = self._target(record)
        api = APIClient(d["url"], timeout=timeout)
        argv = t.ssh_argv([d["berth"], "--host", f"unix://{d['socket']}", "system", "dial-stdio"])
        api.endpoint = replace(api.endpoint, ssh_argv=tuple(argv))
        return api

    # --- the Driver protocol --------------------------------------------------------------------

    def create(self, spec: MachineSpec) -> MachineRecord:
        try:
            return self._create(spec)
        except MachineError:
            mdir = os.path.join(self.state_root, spec.name)
            if not os.path.exists(os.path.join(mdir, "machine.json")):  # nothing recorded: no folder either
                shutil.rmtree(mdir, ignore_errors=True)
            raise

    def _create(self, spec: MachineSpec) -> MachineRecord:
        t = self.target(spec)
        with phase(spec.name, "connect"):
            hello = parse_keys(t.run("connect", "login", scripts.CONNECT, [], CONNECT_BUDGET))
            if hello.get("hello") != "berth":
                raise MachineError(spec.name, "connect", f"ssh {t}: unexpected answer from the login shell")
        lay = layout(spec)
        details: dict[str, Any] = {**lay, "host": t.host, "port": t.port, "user": t.user,
                                   "url": self._url(t, lay["socket"]), "uname": hello.get("uname", ""),
                                   "known_hosts": self._known_hosts(t)}
        record = MachineRecord(spec, details)
        with phase(spec.name, "install"):
            found = self._probe(t, record)
            if " 200" in found.get("answer", "") and not found.get("pid"):
                return self._adopt(t, record, found)
            if found.get("pid"):  # ours from an earlier apply (a lost record, an import): keep it running
                details.update(berthd=found["berthd"], python=found["python"], adopted=False)
                details["berth"] = os.path.join(os.path.dirname(found["berthd"]), "berth")
                details["owned"] = found.get("marker") == "1"
                return self.reload(record, spec)
            if not found.get("berthd"):
                found.update(self._install(t, record, found.get("missing", "").split()))
                details["installed"] = True
            details.update(berthd=found["berthd"], python=found["python"], adopted=False)
            details["berth"] = os.path.join(os.path.dirname(found["berthd"]), "berth")
        self._configure(t, record, spec, new=True)
        self._start(t, record, spec)
        try:
            self._verify(record)
        except MachineError:
            self._stop(t, record)
            raise
        return record

    def start(self, record: MachineRecord) -> MachineRecord:
        t = self._target(record)
        with phase(record.name, "connect"):  # the spec may reach it differently now (user, port, key)
            t.run("connect", "login", scripts.CONNECT, [], CONNECT_BUDGET)
            record.details.update(host=t.host, port=t.port, user=t.user, url=self._url(t, record.details["socket"]),
                                  known_hosts=self._known_hosts(t))
        if self.status(record) == "running":
            return record
        self._require_managed(record, "start")
        self._configure(t, record, record.spec, new=False)
        self._start(t, record, record.spec)
        self._verify(record)
        return record

    def stop(self, record: MachineRecord) -> None:
        if record.details.get("adopted"):
            if self.status(record) == "running":
                raise MachineError(record.name, "stop", "its berthd was running before berth adopted it: "
                                   "stop it on the host")
            return
        self._stop(self._target(record), record)

    def reload(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord:
        new = MachineRecord(spec, dict(record.details), record.created)
        if record.details.get("adopted"):
            self._verify(new, hint="the engine was adopted as it ran: set its labels on the host")
            return new
        t = self._target(record)
        t.run("configure", "reload", scripts.RELOAD,
              [new.details["pidfile"], new.details["config_file"], _labels_json(spec)], STEP_TIMEOUT)
        self._verify(new)
        return new

    def reconfigure(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord:
        self._require_managed(record, "configure")
        if layout(spec) != layout(record.spec):
            raise MachineError(spec.name, "configure", "its paths changed: remove the machine first")
        new = MachineRecord(spec, dict(record.details), record.created)
        t = self._target(record)
        self._stop(t, record)  # containers keep running: conmon owns them, the next berthd adopts them
        self._configure(t, new, spec, new=False)
        self._start(t, new, spec)
        self._verify(new)
        return new

    def remove(self, record: MachineRecord) -> None:
        d = record.details
        if d.get("adopted"):
            return  # not ours: forgotten, left running as found
        t = self._target(record)
        with phase(record.name, "remove"):
            if not d.get("owned"):  # a data root that held something before: keep it and its containers
                self._stop(t, record)
                return
            if self.status(record) == "running":
                self._remove_containers(record)
            self._stop(t, record)
            opts = record.spec.engine.options
            t.run("remove", "cleanup", scripts.REMOVE,
                  [d["data_root"], d["exec_root"], d["files"], d["venv"], d["shim"], d["config_file"], d["log"],
                   d["pidfile"], d["socket"], str(opts.get("bridge-name") or "berth0"),
                   str(opts.get("iptables-prefix") or "BERTH"), d.get("python") or "python3",
                   "1" if d.get("installed") else "0"], STEP_TIMEOUT)

    def status(self, record: MachineRecord) -> str:
        d = record.details
        try:
            out = self._target(record).run("status", "status", scripts.STATUS,
                                           [d["pidfile"], d["config_file"], d["socket"], d.get("python") or "python3"],
                                           CONNECT_BUDGET)
        except (MachineError, KeyError, OSError):
            return "unreachable"
        return parse_keys(out).get("state", "unknown")

    def url(self, record: MachineRecord) -> str:
        return str(record.details.get("url", ""))

    def ip(self, record: MachineRecord) -> str:
        host = str(record.spec.driver_options["host"])
        try:
            return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])
        except OSError:
            return host

    def shell_argv(self, record: MachineRecord, command: list[str]) -> list[str]:
        t = self._target(record)
        interactive = not command and sys.stdin.isatty()
        return t.ssh_argv(command, tty=interactive, batch=not interactive)

    def copy_argv(self, record: MachineRecord, sources: list[str], dest: str, recursive: bool) -> list[str]:
        """`scp`: `NAME:path` arguments were turned into `:path` by the caller, meaning on this machine."""
        t = self._target(record)

        def conv(arg: str) -> str:
            return t.remote_path(arg[1:]) if arg.startswith(":") else arg

        return t.scp_argv([conv(s) for s in sources], conv(dest), recursive)

    # --- steps ----------------------------------------------------------------------------------

    @staticmethod
    def _url(t: SSHTarget, sock: str) -> str:
        host = f"[{t.host}]" if ":" in t.host else t.host
        port = f":{t.port}" if t.port != 22 else ""
        return f"ssh://{t.user}@{host}{port}{sock}"

    @staticmethod
    def _known_hosts(t: SSHTarget) -> str:
        try:
            with open(t.known_hosts) as f:
                return f.read()
        except OSError:
            return ""

    @staticmethod
    def _require_managed(record: MachineRecord, step: str) -> None:
        if record.details.get("adopted"):
            raise MachineError(record.name, step, "its berthd was adopted as it ran: berth does not restart or "
                               "reconfigure it (do that on the host, or remove the machine and apply again)")

    def _probe(self, t: SSHTarget, record: MachineRecord) -> dict[str, str]:
        d = record.details
        beside = os.path.dirname(sys.executable)
        return parse_keys(t.run("install", "looking for berthd", scripts.PROBE,
                                [d["venv"], beside, d["socket"], d["pidfile"], d["config_file"], d["data_root"]],
                                STEP_TIMEOUT))

    def _adopt(self, t: SSHTarget, record: MachineRecord, found: dict[str, str]) -> MachineRecord:
        """An engine answers on the socket and this driver did not start it: keep it exactly as it is."""
        d = record.details
        if not found.get("berthd"):
            raise MachineError(record.name, "install", f"an engine answers on {d['socket']} but no berth is "
                               "installed beside it to reach it with (berth system dial-stdio)")
        d.update(adopted=True, owned=False, berthd=found["berthd"], python=found["python"],
                 berth=os.path.join(os.path.dirname(found["berthd"]), "berth"))
        self._verify(record, hint="the engine was adopted as it ran: set its labels on the host")
        return record

    def _install(self, t: SSHTarget, record: MachineRecord, missing: list[str]) -> dict[str, str]:
        d = record.details
        wheel = _local_wheel(os.path.join(self.state_root, ".wheels"))
        if wheel is None:
            raise MachineError(record.name, "install", f"berth is not installed on {t.host} and there is no wheel "
                               "to copy there (set BERTH_MACHINE_WHEEL to a berth wheel)")
        t.run("install", "mkdir", "mkdir -p \"$1/dist\"\n", [d["files"]], STEP_TIMEOUT)
        t.copy("install", wheel, f"{d['files']}/dist", INSTALL_TIMEOUT)
        return parse_keys(t.run("install", "installing berth", scripts.INSTALL,
                                [d["files"], d["venv"], os.path.basename(wheel), " ".join(missing)], INSTALL_TIMEOUT))

    def _configure(self, t: SSHTarget, record: MachineRecord, spec: MachineSpec, new: bool) -> None:
        d = record.details
        with phase(spec.name, "configure"):
            if spec.engine.cluster is not None:  # its join agent would have to run on the machine: not done yet
                raise MachineError(spec.name, "configure", "engine.cluster is supported by the netns driver only; "
                                   "on an ssh machine set cluster-store/cluster-advertise in engine.options and "
                                   "run `berth cluster join` there")
            link = "0" if spec.driver_options.get("install_dir") else "1"
            out = parse_keys(t.run("configure", "configuring berthd", scripts.CONFIGURE,
                                   [d["config_file"], _labels_json(spec), d["shim"], d["berth"], d["socket"], link,
                                    d["data_root"], "1" if new else "0"], STEP_TIMEOUT))
            if new:
                d["owned"] = out.get("owned") == "1"
            help_text = ""
            if spec.engine.registry_mirrors:
                help_text = t.run("configure", "berthd --help", '"$1" --help\n', [d["berthd"]], STEP_TIMEOUT)
            d["argv"] = [d["berthd"], "-H", f"unix://{d['socket']}", "--data-root", d["data_root"],
                         "--exec-root", d["exec_root"], "--pidfile", d["pidfile"], "--config-file", d["config_file"],
                         *engine_flags(spec.engine, spec.name, help_text)]

    def _start(self, t: SSHTarget, record: MachineRecord, spec: MachineSpec) -> None:
        d = record.details
        out = parse_keys(t.run("start", "starting berthd", scripts.START, [d["log"], d["pidfile"], *d["argv"]],
                               STEP_TIMEOUT))
        d["pid"] = int(out.get("pid") or 0)

    def _stop(self, t: SSHTarget, record: MachineRecord) -> None:
        d = record.details
        t.run("stop", "stopping berthd", scripts.STOP, [d["pidfile"], d["config_file"]], STEP_TIMEOUT)

    def _verify(self, record: MachineRecord, hint: str = "") -> None:
        want = sorted(record.spec.engine.label_list())
        deadline = time.monotonic() + 10
        with phase(record.name, "verify"):
            api = self.client(record, timeout=STEP_TIMEOUT)
            while True:
                try:
                    labels = sorted(api.system.info().get("Labels") or [])
                except (ClientError, DaemonUnreachable, OSError) as e:
                    raise MachineError(record.name, "verify", f"the engine does not answer through ssh: {e}") from e
                if labels == want:
                    return
                if time.monotonic() > deadline or hint:
                    raise MachineError(record.name, "verify", f"the engine reports labels {labels}, want {want}"
                                       + (f" ({hint})" if hint else ""))
                time.sleep(0.2)

    def _remove_containers(self, record: MachineRecord) -> None:
        api = self.client(record)
        try:
            for c in api.containers.list(all=True):
                try:
                    api.containers.remove(c["Id"], force=True, v=True)
                except ClientError:
                    pass
            for n in api.networks.list():
                if n.get("Name") not in ("bridge", "host", "none"):
                    try:
                        api.networks.remove(n["Id"])
                    except ClientError:
                        pass
        except (ClientError, DaemonUnreachable, OSError):
            pass


def _local_wheel(cache_dir: str) -> str | None:
    """The berth to install elsewhere: $BERTH_MACHINE_WHEEL, or a wheel of this berth's source tree
    (an editable install), built from a copy so the tree itself gets no build/ or egg-info."""
    given = os.environ.get("BERTH_MACHINE_WHEEL")
    if given:
        return given if os.path.isfile(given) else None
    from importlib import metadata

    try:
        direct = json.loads(metadata.distribution("berth").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return None
    src = str(direct.get("url", "")).removeprefix("file://")
    if not src or not os.path.isfile(os.path.join(src, "pyproject.toml")):
        return None
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        tree = os.path.join(tmp, "src")
        shutil.copytree(src, tree, ignore=shutil.ignore_patterns(".*", "__pycache__", "tests", "bench", "build",
                                                                  "*.egg-info"))
        for isolation in (["--no-build-isolation"], []):  # offline first, then fetching the build backend
            try:
                subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", cache_dir,
                                tree], check=True, capture_output=True, timeout=STEP_TIMEOUT * 4)
                break
            except (subprocess.SubprocessError, OSError):
                continue
        else:
            return None
    wheels = sorted((os.path.join(cache_dir, n) for n in os.listdir(cache_dir) if n.endswith(".whl")),
                    key=os.path.getmtime)
    return wheels[-1] if wheels else None
