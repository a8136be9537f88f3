#!/usr/bin/env python3
"""Stand-in for the `stop` and `start` commands of a Neo4j source (e.g. systemctl or
kubectl) in lifeboat's black-box tests: `standin_ctl.py stop|start` records the call and
sets the shared state's server. STANDIN_FAIL_STOP / STANDIN_FAIL_START make it fail
(a failing stop leaves the server running)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin_common as c  # noqa: E402

args = sys.argv[1:]
c.log({"who": "ctl", "argv": args})
if args not in (["stop"], ["start"]):
    c.fail("standin ctl", "unexpected command line: %r" % (args,))
if os.environ.get("STANDIN_FAIL_" + args[0].upper()):
    c.fail("standin ctl", "%s failed (stand-in failure)" % args[0])
state = c.load_state()
state["server"] = "stopped" if args == ["stop"] else "running"
c.save_state(state)
