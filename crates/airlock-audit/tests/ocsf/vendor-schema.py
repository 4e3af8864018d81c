#!/usr/bin/env python3
"""Copies the part of the OCSF schema that tests/ocsf/schema.rs reads into schema-<version>/.

Usage: vendor-schema.py SOURCE_DIR [DEST_DIR]
  SOURCE_DIR  an OCSF schema checkout, e.g. ../shared/specs/ocsf-1.8.0
  DEST_DIR    default: schema-1.8.0 beside this script

Copies, byte for byte and keeping the relative layout: LICENSE, NOTICE, version.json,
categories.json, dictionary.json, every profiles/*.json (the validator knows the profile names
from them), the event classes in CLASSES with the files they extend (category file,
base_event.json), and every objects/*.json reachable from their attributes: through the
attributes' types (dictionary.json or the attribute's own "type"), through "$include"d
profiles, and through the objects' "extends" parents, transitively. It does not write
README.md (written by hand) and does not delete anything.
"""

import json
import os
import shutil
import sys

CLASSES = [
    "events/iam/account_change.json",
    "events/iam/authentication.json",
    "events/iam/user_access.json",
    "events/iam/group_management.json",
    "events/application/api_activity.json",
]
TOP = ["LICENSE", "NOTICE", "version.json", "categories.json", "dictionary.json"]


def main():
    src = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    dest = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "schema-1.8.0")

    def load(rel):
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            return json.load(f)

    dictionary = load("dictionary.json")
    types = dictionary["types"]["attributes"]
    dict_attrs = dictionary["attributes"]
    events = {}
    for root, _, names in os.walk(os.path.join(src, "events")):
        for name in names:
            if name.endswith(".json"):
                rel = os.path.relpath(os.path.join(root, name), src)
                events[load(rel)["name"]] = rel

    files = set(TOP)
    files.update("profiles/" + p for p in os.listdir(os.path.join(src, "profiles")))
    pending_objects = []

    def scan(rel):
        if rel in files and not rel.startswith("profiles/"):
            return
        files.add(rel)
        data = load(rel)
        attrs = data.get("attributes") or {}
        includes = attrs.get("$include", [])
        for inc in [includes] if isinstance(includes, str) else includes:
            scan(inc)
        for name, attr in attrs.items():
            if name == "$include" or attr is None:
                continue
            if "$include" in attr:
                scan(attr["$include"])
            typ = attr.get("type") or dict_attrs.get(name, {}).get("type")
            if typ is None:
                sys.exit(f"{rel}: attribute {name} has no type")
            if typ not in types:
                pending_objects.append(typ)
        parent = data.get("extends")
        if parent:
            if rel.startswith("objects/"):
                pending_objects.append(parent)
            else:
                scan(events[parent])

    for rel in CLASSES:
        scan(rel)
    while pending_objects:
        scan(f"objects/{pending_objects.pop()}.json")

    for rel in sorted(files):
        os.makedirs(os.path.dirname(os.path.join(dest, rel)) or dest, exist_ok=True)
        shutil.copyfile(os.path.join(src, rel), os.path.join(dest, rel))
    print(f"copied {len(files)} files to {dest}")


if __name__ == "__main__":
    main()
