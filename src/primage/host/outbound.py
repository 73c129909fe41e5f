"""Outbound network for one sandboxed process: ``python -m primage.host.outbound
bwrap ARGS…`` runs bwrap in a network namespace of its own and joins that namespace to the outside
through slirp4netns (user-mode networking) with the host's loopback cut off, so the process
reaches other machines but never the services on this one (the server, the registry, apps).

bwrap holds the command back (``--block-fd``) until the network is up, and slirp4netns ends with
it. This process stays in the task's process group, so stopping the group stops all three.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# slirp4netns's own DNS forwarder, at the address it gives every namespace it serves.
RESOLV_CONF = b"nameserver 10.0.2.3\n"


def child_pid(fd: int) -> int:
    """The PID bwrap reports on ``--info-fd`` (its JSON document, read whole)."""
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            continue
    raise RuntimeError("bwrap ended before it reported its sandbox")


def inherited() -> list[int]:
    """The descriptors beyond stdio that this process inherited (still inheritable)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                found.append(fd)
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
    return found


def main(argv: list[str]) -> int:
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    dns_r, dns_w = os.pipe()
    os.write(dns_w, RESOLV_CONF)
    os.close(dns_w)
    fds = (info_w, block_r, dns_r)
    extra = ["--info-fd", str(info_w), "--block-fd", str(block_r)]
    extra += ["--perms", "0644", "--ro-bind-data", str(dns_r), "/etc/resolv.conf"]  # over /etc
    end = argv.index("--")  # the end of bwrap's options
    handed = inherited()  # what this process was handed to pass on (a cell's socket)
    bwrap = subprocess.Popen([*argv[:end], *extra, *argv[end:]], pass_fds=(*fds, *handed))
    for fd in fds:
        os.close(fd)
    try:
        pid = child_pid(info_r)
    except RuntimeError as exc:
        print(f"primage: {exc}", file=sys.stderr)
        return bwrap.wait() or 125
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    slirp = subprocess.Popen(
        ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
         "--ready-fd", str(ready_w), "--exit-fd", str(exit_r), str(pid), "tap0"],
        pass_fds=(ready_w, exit_r),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(ready_w)
    os.close(exit_r)
    if not os.read(ready_r, 1):
        print("primage: slirp4netns could not give the task a network", file=sys.stderr)
        bwrap.kill()
    os.write(block_w, b"go")
    os.close(block_w)
    code = bwrap.wait()
    os.close(exit_w)  # slirp4netns ends when this closes
    slirp.wait(timeout=10)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
