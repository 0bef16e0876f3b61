"""The POSIX sh scripts the ssh driver runs on a machine (`sh -s -- ARGS`, script on stdin).

Each prints `key=value` lines for the driver to read and exits non-zero with a message on stderr
when it cannot do its job. They only assume what a Linux host has: sh, coreutils, /proc.
"""

# Every script starts with it: iptables and ip live in sbin, which a non-root login's PATH lacks.
PREAMBLE = 'export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"\n'

# A berthd is "ours" when the process in our pidfile runs with our --config-file: a reused pid, or
# an engine someone else started, is never signalled.
_OURS = r'''
ours_pid() {
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    case "$pid" in ''|*[!0-9]*) return 1;; esac
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config-file $cfg" || return 1
    echo "$pid"
}
'''

# GET /_ping on the engine's socket with the engine's own python (or the host's).
_PING = r'''
ping_engine() {
    [ -S "$sock" ] || return 0
    "$py" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: berth\r\n\r\n")
print(s.recv(4096).decode("latin-1").split("\r\n")[0])' "$sock" 2>/dev/null || true
}
'''

CONNECT = r'''
echo "hello=berth"
echo "uname=$(uname -srm)"
echo "uid=$(id -u)"
'''

# args: venv beside sock pidfile cfg data_root
PROBE = r'''
set -u
venv=$1 beside=$2 sock=$3 pidfile=$4 cfg=$5 data=$6
''' + _OURS + _PING + r'''
berthd=""
for c in "$venv/bin/berthd" "$beside/berthd" "$(command -v berthd 2>/dev/null || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then berthd=$c; break; fi
done
py=python3
if [ -n "$berthd" ] && [ -x "${berthd%/*}/python3" ]; then py=${berthd%/*}/python3; fi
echo "berthd=$berthd"
echo "python=$py"
echo "pid=$(ours_pid || true)"
echo "answer=$(ping_engine)"
[ -e "$data/.berth-machine" ] && echo "marker=1"
missing=""
for tool in runc conmon iptables ip python3; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
echo "missing=$missing"
exit 0
'''

# args: files venv wheel missing-tools. Host packages with apt-get (as root), berth in a venv from
# the wheel that was copied to $files/dist.
INSTALL = r'''
set -eu
files=$1 venv=$2 wheel=$3 missing=$4
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        pkgs=""
        for tool in $missing; do
            case "$tool" in ip) pkgs="$pkgs iproute2";; python3) pkgs="$pkgs python3 python3-venv";;
                            *) pkgs="$pkgs $tool";; esac
        done
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >&2
    else
        echo "missing on this host:$missing (install them, or connect as root on a host with apt-get)" >&2
        exit 3
    fi
fi
python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q "$files/dist/$wheel" >&2
echo "berthd=$venv/bin/berthd"
echo "python=$venv/bin/python3"
'''

# args: cfg labels-json shim berth sock link data new. Writes the config file berthd re-reads on
# SIGHUP, and `docker` (berth) for ssh:// clients, linked into /usr/local/bin only where no docker
# is; a new machine marks an empty or missing data root as its own (remove deletes only that).
CONFIGURE = r'''
set -eu
cfg=$1 labels=$2 shim=$3 berth=$4 sock=$5 link=$6 data=$7 new=$8
umask 022
mkdir -p "${cfg%/*}" "${shim%/*}"
if [ "$new" = 1 ] && { [ ! -e "$data" ] || [ -z "$(ls -A "$data" 2>/dev/null)" ]; }; then
    mkdir -p "$data"
    : > "$data/.berth-machine"
fi
printf '%s\n' "$labels" > "$cfg.tmp"
mv -f "$cfg.tmp" "$cfg"
printf '#!/bin/sh\n# berth as `docker` for ssh:// clients (they run `docker system dial-stdio`); written by berth machine\nDOCKER_HOST="${DOCKER_HOST:-unix://%s}" exec "%s" "$@"\n' "$sock" "$berth" > "$shim.tmp"
chmod 755 "$shim.tmp"
mv -f "$shim.tmp" "$shim"
if [ "$link" = 1 ] && ! command -v docker >/dev/null 2>&1 && [ -d /usr/local/bin ]; then
    ln -s "$shim" /usr/local/bin/docker
fi
if [ -e "$data/.berth-machine" ]; then echo "owned=1"; else echo "owned=0"; fi
'''

# args: log pidfile berthd-argv... Started in a session of its own (setsid), its output to the
# log, so it outlives this ssh connection; ready once berthd writes its pidfile (after it listens).
START = r'''
set -u
log=$1 pidfile=$2
shift 2
mkdir -p "${log%/*}" "${pidfile%/*}"
rm -f "$pidfile"
setsid "$@" < /dev/null >> "$log" 2>&1 &
child=$!
i=0
while [ "$i" -lt 250 ]; do
    if [ -s "$pidfile" ]; then echo "pid=$(cat "$pidfile")"; exit 0; fi
    if ! kill -0 "$child" 2>/dev/null; then
        echo "berthd exited: $(tail -c 400 "$log" | tr '\n' ' ')" >&2
        exit 3
    fi
    sleep 0.1
    i=$((i + 1))
done
echo "berthd did not write $pidfile within 25 s: $(tail -c 300 "$log" | tr '\n' ' ')" >&2
exit 4
'''

# args: pidfile cfg. SIGTERM (containers keep running: conmon owns them), SIGKILL after 15 s.
STOP = r'''
set -u
pidfile=$1 cfg=$2
''' + _OURS + r'''
pid=$(ours_pid) || { rm -f "$pidfile"; echo "stopped=none"; exit 0; }
kill -TERM "$pid"
i=0
while ours_pid > /dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 150 ]; then kill -KILL "$pid"; sleep 0.2; break; fi
    sleep 0.1
done
rm -f "$pidfile"
echo "stopped=$pid"
'''

# args: pidfile cfg labels-json. The new labels, then SIGHUP: no restart.
RELOAD = r'''
set -eu
pidfile=$1 cfg=$2 labels=$3
''' + _OURS + r'''
pid=$(ours_pid) || { echo "berthd (pidfile $pidfile) is not running" >&2; exit 3; }
printf '%s\n' "$labels" > "$cfg.tmp"
mv -f "$cfg.tmp" "$cfg"
kill -HUP "$pid"
echo "reloaded=$pid"
'''

# args: pidfile cfg sock python
STATUS = r'''
set -u
pidfile=$1 cfg=$2 sock=$3 py=$4
''' + _OURS + _PING + r'''
if ours_pid > /dev/null; then echo "state=running"; exit 0; fi
case "$(ping_engine)" in *" 200"*) echo "state=running";; *) echo "state=stopped";; esac
'''

# args: data exec files venv shim cfg log pidfile sock bridge prefix python installed. After the
# containers are removed and berthd stopped: what it mounted, its bridge and chains, its files.
REMOVE = r'''
set -u
data=$1 exec=$2 files=$3 venv=$4 shim=$5 cfg=$6 log=$7 pidfile=$8 sock=$9
shift 9
bridge=$1 prefix=$2 py=$3 installed=$4
for p in /proc/[0-9]*; do  # monitors of containers the engine could not remove
    [ "$(cat "$p/comm" 2>/dev/null)" = conmon ] || continue
    tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qF -- "$exec/" && kill -KILL "${p#/proc/}" 2>/dev/null
done
awk -v a="$data/" -v b="$exec/" 'index($5 "/", a) == 1 || index($5 "/", b) == 1 { print $5 }' /proc/self/mountinfo \
    | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
ip link del "$bridge" 2>/dev/null || true
if iptables-save 2>/dev/null | grep -q -- "^:$prefix-"; then
    "$py" -c 'import sys
from berth.network.iptables import Firewall
Firewall(sys.argv[1]).uninstall()' "$prefix" || echo "warning: chains $prefix-* left in place" >&2
fi
rm -rf "$data" "$exec"
rm -f "$cfg" "$log" "$pidfile" "$sock" "$shim"
if [ -L /usr/local/bin/docker ] && [ "$(readlink /usr/local/bin/docker)" = "$shim" ]; then rm -f /usr/local/bin/docker; fi
if [ "$installed" = 1 ]; then rm -rf "$venv" "$files/dist"; fi
rmdir "${shim%/*}" 2>/dev/null || true
rmdir "$files" 2>/dev/null || true
echo "removed=1"
'''
