#!/usr/bin/env python3
"""Stand-in for the wrapper `kubectl exec -i neo4j-0 -n graph --` in lifeboat's black-box
tests: it refuses any other prefix, records the whole command line, and runs the rest
here (the "container" is the test's folder), stdin and stdout passed through."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin_common as c  # noqa: E402

PREFIX = ["exec", "-i", "neo4j-0", "-n", "graph", "--"]
args = sys.argv[1:]
c.log({"who": "kubectl", "argv": args})
if args[: len(PREFIX)] != PREFIX or len(args) == len(PREFIX):
    c.fail("standin kubectl", "unexpected command line: %r" % (args,))
rest = args[len(PREFIX):]
os.execvp(rest[0], rest)
