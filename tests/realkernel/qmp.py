#!/usr/bin/env python3
"""A minimal QMP client (stdlib only), for dump.sh.

Usage: qmp.py [--timeout SECONDS] SOCKET COMMAND [ARGUMENTS-JSON]

Connects to QEMU's QMP socket (-qmp unix:SOCKET,server=on,wait=off; retried until the timeout while the
socket does not exist yet), negotiates capabilities, runs one command and prints its "return" value as one
line of JSON on stdout. Asynchronous events that arrive meanwhile (STOP, RESUME, DUMP_COMPLETED, ...) go
to stderr, one "event: {...}" line each. Exit status: 0 on a "return", 1 on an "error" reply (its class and
description on stderr), on a timeout (default 120 s for the whole exchange) or when the connection fails.
`quit` succeeds when QEMU closes the connection after (or instead of) replying.

QMP messages are JSON objects, one per line (CRLF-terminated); replies carry the "id" of their command.
dump-guest-memory without "detach" is synchronous: its reply comes when the file is complete.
"""
import json
import socket
import sys
import time


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, path, timeout=120.0):
        self.deadline = time.monotonic() + timeout
        self.buf = b""
        self.next_id = 1
        self.events = []
        self.sock = self._connect(path)
        greeting = self._recv()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.version = greeting["QMP"].get("version", {}).get("qemu")
        self.execute("qmp_capabilities")

    def _left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise QmpError("timed out")
        return left

    def _connect(self, path):
        last = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(self._left())
                s.connect(path)
                return s
            except (FileNotFoundError, ConnectionRefusedError) as e:
                s.close()
                last = e
            except QmpError:
                s.close()
                raise QmpError(f"cannot connect to {path}: {last}") from None
            time.sleep(0.1)

    def _recv(self):
        while b"\n" not in self.buf:
            self.sock.settimeout(self._left())
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise QmpError("timed out waiting for QEMU") from None
            if not chunk:
                raise EOFError("QEMU closed the QMP connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        if not line.strip():
            return self._recv()
        try:
            return json.loads(line)
        except json.JSONDecodeError as e:
            raise QmpError(f"QEMU sent a line that is not JSON ({e}): {line[:200]!r}") from None

    def execute(self, cmd, args=None):
        msg = {"execute": cmd, "id": self.next_id}
        self.next_id += 1
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\r\n")
        while True:
            obj = self._recv()
            if "event" in obj:
                self.events.append(obj)
                print("event: " + json.dumps(obj, sort_keys=True), file=sys.stderr)
                continue
            if obj.get("id") != msg["id"]:
                continue
            if "error" in obj:
                err = obj["error"]
                raise QmpError(f"{cmd}: {err.get('class')}: {err.get('desc')}")
            if "return" in obj:
                return obj["return"]
            raise QmpError(f"{cmd}: reply without return or error: {obj}")

    def close(self):
        self.sock.close()


def main(argv):
    timeout = 120.0
    if len(argv) >= 2 and argv[0] == "--timeout":
        timeout = float(argv[1])
        argv = argv[2:]
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    path, cmd = argv[0], argv[1]
    try:
        args = json.loads(argv[2]) if len(argv) == 3 else None
    except json.JSONDecodeError as e:
        print(f"qmp.py: arguments are not JSON: {e}", file=sys.stderr)
        return 2
    try:
        q = Qmp(path, timeout)
    except (QmpError, OSError, EOFError) as e:
        print(f"qmp.py: {path}: {e}", file=sys.stderr)
        return 1
    try:
        ret = q.execute(cmd, args)
    except EOFError:
        if cmd == "quit":
            return 0
        print(f"qmp.py: {cmd}: QEMU closed the connection without a reply", file=sys.stderr)
        return 1
    except (QmpError, OSError) as e:
        print(f"qmp.py: {e}", file=sys.stderr)
        return 1
    finally:
        q.close()
    print(json.dumps(ret, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
