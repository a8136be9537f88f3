#!/usr/bin/env python3
"""Stand-in for `helm` and `kubectl` (no Kubernetes cluster can run on the test machine).

It accepts exactly the command lines lifeboat's `helm` step sends, and nothing else:
    helm history REL --max 1 --output json --namespace NS [--kube-context C]
    helm upgrade --install REL CHART --namespace NS [--kube-context C] [--create-namespace]
         [--version V] [-f FILE]... [--set K=V]... --wait --timeout Ns
    helm rollback REL REV --namespace NS [--kube-context C] --wait --timeout Ns
    helm uninstall REL --namespace NS [--kube-context C]
    kubectl delete namespace NS --ignore-not-found [--context C]
    kubectl get deployment NAME --namespace NS [--context C] -o jsonpath={.spec.replicas}
    kubectl scale deployment/NAME --namespace NS [--context C] --replicas=N
    kubectl --context C get nodes
Any other command line exits 64. Releases, revisions and deployments (state key
"_deployments": {"NS/NAME": replicas}) live in state.json beside this file, every call is appended to calls.log (one JSON argv per line), and a file `mode`
beside it makes `upgrade` fail ("fail") or hang ("hang"), as a broken chart or a
rollout that never gets ready would.
"""
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.path.join(HERE, "state.json")


def load():
    try:
        with open(STATE) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(state):
    with open(STATE + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(STATE + ".tmp", STATE)


def refuse(why):
    sys.stderr.write("stand-in: unexpected command line (%s): %s\n" % (why, sys.argv))
    sys.exit(64)


def take(args, flag):
    """`flag VALUE` at the front of args; returns VALUE."""
    if len(args) < 2 or args[0] != flag:
        refuse("expected %s VALUE at %r" % (flag, args[:2]))
    value = args[1]
    del args[:2]
    return value


def target(args, context_flag="--kube-context"):
    ns = take(args, "--namespace")
    ctx = None
    if args and args[0] == context_flag:
        ctx = take(args, context_flag)
    return ns, ctx


def wait_timeout(args):
    if args[:1] != ["--wait"]:
        refuse("expected --wait")
    del args[:1]
    t = take(args, "--timeout")
    if not re.fullmatch(r"[0-9]+s", t):
        refuse("timeout %r is not N s" % t)


def done(args):
    if args:
        refuse("left over: %r" % args)


def mode():
    try:
        with open(os.path.join(HERE, "mode")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def helm(args):
    state = load()
    if not args:
        refuse("no subcommand")
    cmd = args.pop(0)
    if cmd == "history":
        rel = args.pop(0)
        if take(args, "--max") != "1" or take(args, "--output") != "json":
            refuse("history wants --max 1 --output json")
        ns, _ = target(args)
        done(args)
        revs = state.get(ns + "/" + rel)
        if not revs:
            sys.stderr.write("Error: release: not found\n")
            sys.exit(1)
        last = revs[-1]
        print(json.dumps([{"revision": last["revision"], "status": last["status"],
                           "chart": last["chart"], "app_version": "", "description": last["status"]}]))
        return
    if cmd == "upgrade":
        if args[:1] != ["--install"]:
            refuse("upgrade without --install")
        del args[:1]
        rel, chart = args.pop(0), args.pop(0)
        ns, _ = target(args)
        created = False
        if args[:1] == ["--create-namespace"]:
            del args[:1]
            created = True
        if args[:1] == ["--version"]:
            take(args, "--version")
        while args[:1] == ["-f"]:
            values = take(args, "-f")
            if not os.path.isfile(values):
                sys.stderr.write("Error: open %s: no such file or directory\n" % values)
                sys.exit(1)
        sets = {}
        while args[:1] == ["--set"]:
            kv = take(args, "--set")
            if "=" not in kv:
                refuse("--set %r has no =" % kv)
            k, v = kv.split("=", 1)
            sets[k] = v
        wait_timeout(args)
        done(args)
        key = ns + "/" + rel
        revs = state.setdefault(key, [])
        if not revs and not created and ns not in state.get("_namespaces", []):
            sys.stderr.write('Error: create: failed to create: namespaces "%s" not found\n' % ns)
            sys.exit(1)
        if created:
            state.setdefault("_namespaces", []).append(ns)
        rev = (revs[-1]["revision"] if revs else 0) + 1
        if mode() == "hang":
            time.sleep(600)
        if mode() == "fail":
            revs.append({"revision": rev, "status": "failed", "chart": chart, "set": sets})
            save(state)
            sys.stderr.write('Error: UPGRADE FAILED: release %s failed, and has been rolled back due to atomic being set: context deadline exceeded\n' % rel)
            sys.exit(1)
        revs.append({"revision": rev, "status": "deployed", "chart": chart, "set": sets})
        save(state)
        print('Release "%s" has been upgraded. Happy Helming!' % rel)
        return
    if cmd == "rollback":
        rel, rev = args.pop(0), args.pop(0)
        ns, _ = target(args)
        wait_timeout(args)
        done(args)
        revs = state.get(ns + "/" + rel) or []
        old = [r for r in revs if str(r["revision"]) == rev]
        if not old:
            sys.stderr.write("Error: release has no %s version\n" % rev)
            sys.exit(1)
        revs.append({"revision": revs[-1]["revision"] + 1, "status": "deployed",
                     "chart": old[0]["chart"], "set": old[0].get("set", {}), "rolled-back-to": int(rev)})
        save(state)
        print("Rollback was a success! Happy Helming!")
        return
    if cmd == "uninstall":
        rel = args.pop(0)
        ns, _ = target(args)
        done(args)
        if not state.pop(ns + "/" + rel, None):
            sys.stderr.write("Error: uninstall: Release not loaded: %s: release: not found\n" % rel)
            sys.exit(1)
        save(state)
        print('release "%s" uninstalled' % rel)
        return
    refuse("unknown subcommand %r" % cmd)


def kubectl(args):
    if args[:1] == ["--context"]:
        take(args, "--context")
        if args != ["get", "nodes"]:
            refuse("kubectl --context C only gets nodes")
        if mode() == "no-nodes":
            sys.stderr.write("No resources found\n")
            sys.exit(1)
        print("NAME                         STATUS   ROLES    AGE   VERSION")
        print("ip-10-1-0-11.ec2.internal    Ready    <none>   3d    v1.30.4")
        return
    if args[:2] == ["get", "deployment"]:
        del args[:2]
        name = args.pop(0)
        ns, _ = target(args, "--context")
        if args != ["-o", "jsonpath={.spec.replicas}"]:
            refuse("get deployment wants -o jsonpath={.spec.replicas}")
        replicas = load().get("_deployments", {}).get(ns + "/" + name)
        if replicas is None:
            sys.stderr.write('Error from server (NotFound): deployments.apps "%s" not found\n' % name)
            sys.exit(1)
        sys.stdout.write(str(replicas))
        return
    if args[:1] == ["scale"]:
        del args[:1]
        what = args.pop(0)
        if not what.startswith("deployment/"):
            refuse("scale wants deployment/NAME")
        name = what[len("deployment/"):]
        ns, _ = target(args, "--context")
        if len(args) != 1 or not re.fullmatch(r"--replicas=[0-9]+", args[0]):
            refuse("scale wants --replicas=N last")
        state = load()
        deployments = state.setdefault("_deployments", {})
        if ns + "/" + name not in deployments:
            sys.stderr.write('Error from server (NotFound): deployments.apps "%s" not found\n' % name)
            sys.exit(1)
        deployments[ns + "/" + name] = int(args[0].split("=", 1)[1])
        save(state)
        print("deployment.apps/%s scaled" % name)
        return
    if args[:2] != ["delete", "namespace"]:
        refuse("kubectl stand-in: unknown command line")
    del args[:2]
    ns = args.pop(0)
    if args[:1] != ["--ignore-not-found"]:
        refuse("expected --ignore-not-found")
    del args[:1]
    if args[:1] == ["--context"]:
        take(args, "--context")
    done(args)
    state = load()
    if ns in state.get("_namespaces", []):
        state["_namespaces"].remove(ns)
    for key in [k for k in state if k.startswith(ns + "/")]:
        del state[key]
    save(state)
    print('namespace "%s" deleted' % ns)


def main():
    with open(os.path.join(HERE, "calls.log"), "a") as f:
        f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\n")
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if name == "kubectl":
        kubectl(args)
    else:
        helm(args)


main()
