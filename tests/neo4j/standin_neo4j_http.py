#!/usr/bin/env python3
"""Stand-in for Neo4j's HTTP transactional endpoint in lifeboat's black-box tests.

Serves POST /db/DB/tx/commit on 127.0.0.1 (a free port, printed on the first line of
stdout). Each request must carry Content-Type application/json and the basic auth of
STANDIN_AUTH ("user:password"); its statements must be ones lifeboat sends (counts,
RETURN 1, and STOP / CREATE ... IF NOT EXISTS / START DATABASE on `system`). Counts come
from the shared state file, so a load changes what is reported. A stopped server
answers 503; an offline database or an unknown one answers Neo4j's error codes.
"""

import base64
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin_common as c  # noqa: E402

AUTH = "Basic " + base64.b64encode(os.environ["STANDIN_AUTH"].encode()).decode()
DATABASE = os.environ.get("STANDIN_DATABASE", "neo4j")


def error(code, message):
    return {"results": [], "errors": [{"code": code, "message": message}]}


def answer(db, statement, state):
    """One result, or an error (code, message)."""
    if db == "system":
        m = re.fullmatch(r"(STOP|START) DATABASE `([^`]+)` WAIT", statement)
        if m and m.group(2) == DATABASE:
            state["online"] = m.group(1) == "START"
            c.save_state(state)
            return None
        m = re.fullmatch(r"CREATE DATABASE `([^`]+)` IF NOT EXISTS WAIT", statement)
        if m and m.group(1) == DATABASE:
            return None
        return ("Neo.ClientError.Statement.SyntaxError", "stand-in: unexpected %r" % statement)
    if db != DATABASE:
        return ("Neo.ClientError.Database.DatabaseNotFound", "Database does not exist. Database name: '%s'." % db)
    if not state["online"]:
        return ("Neo.TransientError.General.DatabaseUnavailable", "database %s is stopped" % db)
    graph = state["graph"]
    if statement == "RETURN 1":
        return [1]
    if statement == "MATCH (n) RETURN count(n)":
        return [sum(graph["nodes"].values()) + state.get("skew", 0)]
    if statement == "MATCH ()-[r]->() RETURN count(r)":
        return [sum(graph["relationships"].values())]
    m = re.fullmatch(r"MATCH \(n:`((?:[^`]|``)+)`\) RETURN count\(n\)", statement)
    if m:
        return [graph["nodes"].get(m.group(1).replace("``", "`"), 0)]
    m = re.fullmatch(r"MATCH \(\)-\[r:`((?:[^`]|``)+)`\]->\(\) RETURN count\(r\)", statement)
    if m:
        return [graph["relationships"].get(m.group(1).replace("``", "`"), 0)]
    return ("Neo.ClientError.Statement.SyntaxError", "stand-in: unexpected %r" % statement)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(405, error("standin", "use POST"))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        m = re.fullmatch(r"/db/([^/]+)/tx/commit", self.path)
        auth_ok = self.headers.get("Authorization") == AUTH
        ctype = self.headers.get("Content-Type", "")
        try:
            statements = [s["statement"] for s in json.loads(raw)["statements"]]
        except (ValueError, KeyError, TypeError):
            statements = None
        c.log({"who": "http", "path": self.path, "auth-ok": auth_ok, "content-type": ctype, "statements": statements})
        if not auth_ok:
            return self.reply(401, error("Neo.ClientError.Security.Unauthorized", "The client is unauthorized due to authentication failure."))
        if not m or ctype.split(";")[0].strip() != "application/json" or statements is None:
            return self.reply(400, error("standin", "bad request %s %r" % (self.path, ctype)))
        state = c.load_state()
        if state["server"] != "running":
            return self.reply(503, {"stand-in": "server stopped"})
        results = []
        for s in statements:
            r = answer(m.group(1), s, state)
            if isinstance(r, tuple):
                return self.reply(200, error(*r))
            rows = [] if r is None else [{"row": r, "meta": [None]}]
            results.append({"columns": ["x"], "data": rows})
        self.reply(200, {"results": results, "errors": []})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
