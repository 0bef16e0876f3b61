"""The state directory: one folder per machine holding `machine.json` (its MachineRecord) next to
whatever its driver keeps there (sockets, logs, data). Default `~/.berth/machines`.

Writes are atomic (temp file + rename). Export/import carry the records only, never the
machines' data or, unless asked, private keys.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from .driver import MachineRecord

DEFAULT_STATE_DIR = os.path.join("~", ".berth", "machines")
RECORD = "machine.json"
EXPORT_FORMAT = "berth.machines/1"


class NoSuchMachine(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such machine: {name} (see `berth machine ls`)")
        self.name = name


class StateStore:
    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(root or os.environ.get("BERTH_MACHINE_STORAGE_PATH")
                                                        or DEFAULT_STATE_DIR))

    def machine_dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def names(self) -> list[str]:
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in entries if os.path.isfile(os.path.join(self.root, n, RECORD))]

    def all(self) -> dict[str, MachineRecord]:
        out = {}
        for name in self.names():
            try:
                out[name] = self.load(name)
            except (NoSuchMachine, ValueError, KeyError):
                continue
        return out

    def load(self, name: str) -> MachineRecord:
        try:
            with open(os.path.join(self.machine_dir(name), RECORD)) as f:
                return MachineRecord.from_dict(json.load(f))
        except FileNotFoundError:
            raise NoSuchMachine(name) from None

    def save(self, record: MachineRecord) -> None:
        d = self.machine_dir(record.name)
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, RECORD)
        with open(path + ".tmp", "w") as f:
            json.dump(record.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.rename(path + ".tmp", path)

    def forget(self, name: str) -> None:
        """Drop the record and the machine's folder (the driver has removed the machine)."""
        shutil.rmtree(self.machine_dir(name), ignore_errors=True)
        try:
            os.rmdir(self.root)  # only when it is empty
        except OSError:
            pass

    # --- sharing between workstations -----------------------------------------------------------

    def export(self, names: list[str] | None = None, with_keys: bool = False) -> dict[str, Any]:
        records = self.all()
        chosen = names or list(records)
        out = []
        for name in chosen:
            if name not in records:
                raise NoSuchMachine(name)
            rec = records[name].to_dict()
            key = rec["spec"]["driver_options"].get("identity_file")
            if with_keys and key and os.path.isfile(os.path.expanduser(key)):
                with open(os.path.expanduser(key)) as f:
                    rec["identity"] = f.read()
            out.append(rec)
        return {"format": EXPORT_FORMAT, "machines": out}

    def import_(self, data: dict[str, Any], overwrite: bool = False) -> list[str]:
        if data.get("format") != EXPORT_FORMAT:
            raise ValueError(f"not a berth machines export (format {data.get('format')!r})")
        done = []
        for rec in data.get("machines") or []:
            record = MachineRecord.from_dict(rec)
            if record.name in self.names() and not overwrite:
                raise ValueError(f"machine {record.name} exists already (use --force to replace its record)")
            self.save(record)
            if rec.get("identity"):
                path = os.path.join(self.machine_dir(record.name), "id_key")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(rec["identity"])
            done.append(record.name)
        return done
