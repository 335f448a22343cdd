#!/usr/bin/env python3
"""Draws the key lifecycle (Pending -> Active -> Retired -> pruned) as text,
from the key records of a real run's lifecycle.json.

Input (stdin), JSON: {"settings": {"publishAhead": "4s", "rotationInterval":
"12s", "maxTokenTTL": "4s", "clockSkew": "1s", "propagationGrace": "1s"},
"keys": [<lifecycle.json key records, every kid seen during the run, with
the last values seen>]}. Output (stdout): the diagram that README.md shows,
one character per second from the first key's creation. Times are rounded
to the nearest `--grid` seconds (default 2), so a few hundred milliseconds of
scheduling delay in the run do not change the picture.

tests/lifecycle_diagram.rs makes the run, calls this script and compares
its output with the README's block.
"""

import argparse
import json
import sys
from datetime import datetime, timezone


def seconds(text):
    """A Go-style duration of whole seconds/minutes/hours ("4s", "1m30s")."""
    total, number = 0, ""
    for c in text:
        if c.isdigit():
            number += c
        else:
            total += int(number) * {"h": 3600, "m": 60, "s": 1}[c]
            number = ""
    return total


def when(text):
    """An RFC 3339 UTC timestamp ("...T02:07:23.242738459Z") as seconds."""
    base, _, frac = text.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(base).replace(tzinfo=timezone.utc).timestamp()
    return whole + (float("0." + frac) if frac else 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=2)
    args = parser.parse_args()
    run = json.load(sys.stdin)
    s = {k: seconds(v) for k, v in run["settings"].items()}
    keys = sorted(run["keys"], key=lambda k: when(k["createdAt"]))
    t0 = when(keys[0]["createdAt"])

    def at(field_value):
        offset = when(field_value) - t0
        return int(round(offset / args.grid)) * args.grid

    spans = []
    for k in keys:
        created, active = at(k["createdAt"]), at(k["activatesAt"])
        retired = at(k["retiredAt"]) if k.get("retiredAt") else None
        prune = at(k["pruneAfter"]) if k.get("pruneAfter") else None
        spans.append((created, active, retired, prune))
    end = max(p if p is not None else (r if r is not None else a) for _, a, r, p in spans) + 4
    width = end + 1

    out = []
    ruler = [" "] * (width + 4)
    for t in range(0, width, 8):
        label = f"{t}s"
        ruler[t:t + len(label)] = label
    out.append("         " + "".join(ruler).rstrip())
    out.append("         " + "".join("|" if t % 8 == 0 else " " for t in range(width)).rstrip())
    for i, (created, active, retired, prune) in enumerate(spans, 1):
        row = [" "] * width
        for t in range(created, active):
            row[t] = "."
        for t in range(active, retired if retired is not None else end):
            row[t] = "="
        if retired is not None:
            for t in range(retired, prune):
                row[t] = "-"
            row[prune] = "x"
        else:
            row[end - 1] = ">"
        out.append(f"key {i}    " + "".join(row).rstrip())

    # The second key's timeline, marked: where each setting shows.
    created, active, retired, prune = spans[1]
    marks = [" "] * width
    for t in (created, active, retired, prune):
        marks[t] = "^"
    out.append("         " + "".join(marks).rstrip())
    labels = [
        (prune, f"pruned: retiredAt + maxTokenTTL {run['settings']['maxTokenTTL']}"
                f" + clockSkew {run['settings']['clockSkew']}"
                f" + propagation grace {run['settings']['propagationGrace']}"),
        (retired, "retired: the next key signs (rotationInterval "
                  f"{run['settings']['rotationInterval']} after this one did)"),
        (active, f"signs: publishAhead {run['settings']['publishAhead']} after it was published"),
        (created, "published (Pending)"),
    ]
    for i, (col, text) in enumerate(labels):
        line = [" "] * width
        for other, _ in labels[i + 1:]:
            line[other] = "|"
        out.append("         " + ("".join(line[:col]) + text).rstrip())
    out.append("")
    out.append(". Pending: published, not signing   = Active: the one signer   "
               "- Retired: verifies only   x pruned   > still signing")
    print("\n".join(out))


if __name__ == "__main__":
    main()
