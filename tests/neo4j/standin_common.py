"""Shared by the Neo4j stand-ins of lifeboat's black-box tests (not a Neo4j).

The stand-ins share one JSON state file (STANDIN_STATE): whether the server runs,
whether the database is online, the graph's counts, and a skew the HTTP stand-in adds
to the node count it reports. Every invocation is appended as one JSON line to
STANDIN_LOG, which the tests read back.
"""

import json
import os
import sys
import time

STATE = os.environ["STANDIN_STATE"]
LOG = os.environ["STANDIN_LOG"]


def log(entry):
    entry["t"] = time.time()
    line = json.dumps(entry) + "\n"
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def load_state():
    with open(STATE) as f:
        return json.load(f)


def save_state(state):
    tmp = STATE + ".tmp.%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, STATE)


def fail(who, message):
    sys.stderr.write("%s: %s\n" % (who, message))
    sys.exit(2)


HEADER = b"STANDIN-NEO4J-DUMP v1\n"


def dump_bytes(graph):
    """A deterministic pseudo-dump of `graph`: header, the graph as JSON, padding that
    makes the stream span many reads."""
    body = json.dumps(graph, sort_keys=True).encode() + b"\n"
    padding = b"".join(b"%08d stand-in dump padding\n" % i for i in range(20000))
    return HEADER + body + padding


def parse_dump(data, who):
    if not data.startswith(HEADER):
        fail(who, "input is not a stand-in dump (%d bytes)" % len(data))
    line = data[len(HEADER):].split(b"\n", 1)[0]
    graph = json.loads(line)
    if data != dump_bytes(graph):
        fail(who, "stand-in dump is damaged (%d bytes)" % len(data))
    return graph
