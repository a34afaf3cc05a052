#!/usr/bin/env python3
# Copyright 2026 The vfio-user-rs Authors.
# SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
"""Runs libvfio-user's sample client against a sample server and reports how each
process of the run ended.

    lvu-client.py DIR SOURCE_SERVER SOCKET

DIR holds libvfio-user's (already built) `client` and the `server` it will start as the
migration destination (`DIR/server -v SOCKET_migrated`); SOURCE_SERVER is started first as
`SOURCE_SERVER -v SOCKET`. Outputs go to DIR/{src,client}.{out,err}.

The client forks: its original process execs the destination server and the forked
child carries on as the client, so `$?` of `DIR/client SOCKET` is the destination
server's status. This script becomes a child subreaper to collect the forked client's
status too. It runs prebuilt binaries only.
"""
import ctypes
import os
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main():
    d, source, sock = sys.argv[1], sys.argv[2], sys.argv[3]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    for f in (sock, sock + "_migrated"):
        if os.path.exists(f):
            os.unlink(f)
    out = lambda name: open(os.path.join(d, name), "w")
    src = subprocess.Popen([source, "-v", sock], stdout=out("src.out"), stderr=out("src.err"))
    while not os.path.exists(sock):
        time.sleep(0.01)
    start = time.time()
    cli = subprocess.Popen([os.path.join(d, "client"), sock], stdout=out("client.out"), stderr=out("client.err"))
    names = {src.pid: "source server", cli.pid: "client's original process (destination server)"}
    failed = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.time() - start > 90:
                sys.exit("timeout: processes still running")
            time.sleep(0.05)
            continue
        code = os.waitstatus_to_exitcode(status)
        failed |= code != 0
        print("%-48s exit %d after %.1f s" % (names.get(pid, "forked client"), code, time.time() - start))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
