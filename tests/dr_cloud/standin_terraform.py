#!/usr/bin/env python3
"""Stand-in for `terraform` (no cloud to apply to on the test machine).

It accepts exactly the command lines the shipped region runbook sends, and nothing else:
    terraform -chdir=DIR apply -input=false -auto-approve
    terraform -chdir=DIR plan -input=false -lock=false
DIR must be a folder holding a `main.tf`. Any other command line exits 64. Every call is
appended to calls.log beside this file (one JSON argv per line, shared with the
helm/kubectl stand-in).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def refuse(why):
    sys.stderr.write("stand-in: unexpected command line (%s): %s\n" % (why, sys.argv))
    sys.exit(64)


def main():
    with open(os.path.join(HERE, "calls.log"), "a") as f:
        f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\n")
    args = sys.argv[1:]
    if not args or not args[0].startswith("-chdir="):
        refuse("expected -chdir=DIR first")
    folder = args.pop(0)[len("-chdir="):]
    if not os.path.isfile(os.path.join(folder, "main.tf")):
        sys.stderr.write("Error: No configuration files in %s\n" % folder)
        sys.exit(1)
    if args == ["apply", "-input=false", "-auto-approve"]:
        print("Apply complete! Resources: 0 added, 0 changed, 0 destroyed.")
        return
    if args == ["plan", "-input=false", "-lock=false"]:
        print("No changes. Your infrastructure matches the configuration.")
        return
    refuse("not an apply or plan the runbook sends")


main()
