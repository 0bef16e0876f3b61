"""The text dockerd's legacy builder shows and records: `Step N/M : ...` and history `created_by`.

Pure functions over already-expanded instructions. The strings are byte-for-byte what dockerd
20.10 writes (checked against it), Go formatting quirks included: `CMD ["sh" "-c" "x"]` is Go's
%q of a []string, `VOLUME [/a /b]` its %v, HEALTHCHECK is %q of a struct (retries as a rune).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from berth.build import instructions as ins
from berth.build.flags import format_go_duration
from berth.build.parse import Dockerfile

DEFAULT_SHELL = ("/bin/sh", "-c")
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\"}


def step_count(dockerfile: Dockerfile) -> int:
    """M in `Step N/M`: global ARGs, FROMs and every instruction of every stage."""
    return len(dockerfile.meta_args) + sum(1 + len(s.commands) for s in dockerfile.stages)


def step_line(number: int, total: int, instr: ins.Instruction) -> str:
    """`Step 2/5 : RUN echo $A`: the instruction as written (continuations joined), unexpanded."""
    return f"Step {number}/{total} : {instr.code}\n"


def go_quote(s: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif "\udc80" <= ch <= "\udcff":  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        elif _go_printable(ch):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _go_printable(ch: str) -> bool:
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"


def go_quote_rune(n: int) -> str:
    """Go's %q of an integer: a quoted rune literal (3 -> '\\x03', 65 -> 'A')."""
    ch = chr(n)
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + go_quote(ch)[1:-1] + "'"


def go_quote_list(items: Sequence[str]) -> str:
    """Go's %q of a []string: `["a" "b c"]`."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def go_list(items: Sequence[str]) -> str:
    """Go's %v of a []string: `[a b c]`."""
    return "[" + " ".join(items) + "]"


def resolve_cmdline(cmd: Sequence[str], prepend_shell: bool, shell: Sequence[str] = DEFAULT_SHELL) -> list[str]:
    """The argv of a RUN/CMD/ENTRYPOINT: the shell plus the string, or the exec form as is."""
    if prepend_shell and cmd:
        return [*shell, " ".join(cmd)]
    return list(cmd)


def nop(shell: Sequence[str], comment: str) -> str:
    """created_by of a step that changes only the config: `/bin/sh -c #(nop)  CMD ["sh"]`."""
    return " ".join([*shell, "#(nop) ", comment])


def created_by_run(argv: Sequence[str], history_args: Sequence[str] | None = None) -> str:
    """`|2 A=1 B=2 /bin/sh -c make` (with build args, see ArgScope.history_args) or the argv."""
    if history_args is None:
        return " ".join(argv)
    return " ".join([f"|{len(history_args)}", *history_args, *argv])


def created_by_copy(shell: Sequence[str], kind: str, source_hash: str, dest: str) -> str:
    """COPY/ADD: `/bin/sh -c #(nop) COPY file:<sha256> in /dst ` (one space, a trailing one).

    source_hash is `file:<hex>`, `dir:<hex>` or `multi:<hex>` as the builder computed it.
    """
    return " ".join([*shell, f"#(nop) {kind} {source_hash} in {dest} "])


def created_by_workdir(shell: Sequence[str], workdir: str) -> str:
    """WORKDIR alone puts one space after #(nop); workdir is the resolved absolute path."""
    return " ".join([*shell, f"#(nop) WORKDIR {workdir}"])


def nop_comment(instr: ins.Instruction, shell: Sequence[str] = DEFAULT_SHELL) -> str:
    """What follows `#(nop)  ` for a config-only instruction, already expanded.

    shell is the shell in effect (for CMD/ENTRYPOINT in shell form, and SHELL's own new value).
    """
    if isinstance(instr, (ins.Env, ins.Label)):
        return " ".join([instr.name.upper(), *(str(p) for p in instr.pairs)])
    if isinstance(instr, ins.Arg):
        return "ARG " + " ".join(str(a) for a in instr.args)
    if isinstance(instr, ins.Expose):
        return "EXPOSE " + " ".join(instr.ports)
    if isinstance(instr, ins.User):
        return "USER " + instr.user
    if isinstance(instr, ins.Volume):
        return "VOLUME " + go_list(instr.volumes)
    if isinstance(instr, ins.StopSignal):
        return "STOPSIGNAL " + instr.signal
    if isinstance(instr, (ins.Cmd, ins.Entrypoint)):
        return f"{instr.name.upper()} {go_quote_list(resolve_cmdline(instr.cmd, instr.prepend_shell, shell))}"
    if isinstance(instr, ins.Shell):
        return "SHELL " + go_list(instr.shell)
    if isinstance(instr, ins.Healthcheck):
        return "HEALTHCHECK " + healthcheck_repr(instr)
    if isinstance(instr, ins.Onbuild):
        return "ONBUILD " + instr.expression
    if isinstance(instr, ins.Maintainer):
        return "MAINTAINER " + instr.maintainer
    raise ValueError(f"{instr.name.upper()} is not a config-only instruction")


def healthcheck_repr(h: ins.Healthcheck) -> str:
    """Go's %q of a *HealthConfig: `&{["CMD-SHELL" "true"] "5m0s" "3s" "0s" '\\x03'}`."""
    durations = [h.interval, h.timeout, h.start_period] + ([h.start_interval] if h.start_interval else [])
    parts = [go_quote_list(h.test), *(go_quote(format_go_duration(d)) for d in durations),
             go_quote_rune(h.retries)]
    return "&{" + " ".join(parts) + "}"
