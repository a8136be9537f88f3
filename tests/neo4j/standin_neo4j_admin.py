#!/usr/bin/env python3
"""Stand-in for `neo4j-admin` (Neo4j 5) in lifeboat's black-box tests.

Accepts exactly these command lines and refuses anything else (exit 2):
  --version
  database dump DB --to-stdout                              (server must be stopped)
  database load DB --from-stdin --overwrite-destination=true (server must be stopped)
  database backup DB --to-path=DIR                          (server running, DIR empty)
  database restore --from-path=FILE DB --overwrite-destination=true (database stopped)
DB must be STANDIN_DATABASE (default neo4j). With STANDIN_DUMP_FAIL set, a dump writes
part of its output and fails.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin_common as c  # noqa: E402

WHO = "standin neo4j-admin"
args = sys.argv[1:]
c.log({"who": "neo4j-admin", "argv": args})
DATABASE = os.environ.get("STANDIN_DATABASE", "neo4j")


def database(name):
    if name != DATABASE:
        c.fail(WHO, "database %r not found (the stand-in has %r)" % (name, DATABASE))


def server(state, want):
    if state["server"] != want:
        c.fail(WHO, "the server is %s; this command needs it %s" % (state["server"], want))


if args == ["--version"]:
    print("5.26.0")
    sys.exit(0)

if len(args) == 4 and args[:2] == ["database", "dump"] and args[3] == "--to-stdout":
    database(args[2])
    state = c.load_state()
    server(state, "stopped")
    data = c.dump_bytes(state["graph"])
    out = sys.stdout.buffer
    if os.environ.get("STANDIN_DUMP_FAIL"):
        out.write(data[: len(data) // 2])
        out.flush()
        c.fail(WHO, "disk full while dumping (stand-in failure)")
    out.write(data)
    out.flush()
    sys.exit(0)

if (
    len(args) == 5
    and args[:2] == ["database", "load"]
    and args[3:] == ["--from-stdin", "--overwrite-destination=true"]
):
    database(args[2])
    state = c.load_state()
    server(state, "stopped")
    graph = c.parse_dump(sys.stdin.buffer.read(), WHO)
    state["graph"] = graph
    c.save_state(state)
    sys.exit(0)

if len(args) == 4 and args[:2] == ["database", "backup"] and args[3].startswith("--to-path="):
    database(args[2])
    state = c.load_state()
    server(state, "running")
    to = args[3][len("--to-path="):]
    if not os.path.isabs(to) or not os.path.isdir(to) or os.listdir(to):
        c.fail(WHO, "--to-path=%s must be an existing empty folder" % to)
    with open(os.path.join(to, "%s-2025-01-02T03-04-05.backup" % args[2]), "wb") as f:
        f.write(c.dump_bytes(state["graph"]))
    sys.exit(0)

if (
    len(args) == 5
    and args[:2] == ["database", "restore"]
    and args[2].startswith("--from-path=")
    and args[4] == "--overwrite-destination=true"
):
    database(args[3])
    state = c.load_state()
    server(state, "running")
    if state["online"]:
        c.fail(WHO, "database %s is online: stop it first" % args[3])
    with open(args[2][len("--from-path="):], "rb") as f:
        state["graph"] = c.parse_dump(f.read(), WHO)
    c.save_state(state)
    sys.exit(0)

c.fail(WHO, "unexpected command line: %r" % (args,))
