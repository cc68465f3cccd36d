#!/usr/bin/env python3
"""check_readme.py [README.md]

The README's examples are tested code: every fenced block right after a line
`<!-- example: PATH -->` must be exactly the example at PATH (relative to the
top directory), which that language's tests run and check. PATH is either
shown whole, or only between two lines containing `README begin` and
`README end` (comment markers), dedented. Fails listing every block that
differs, with a diff.
"""
import difflib
import os
import re
import sys
import textwrap

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(top, "README.md")
lines = open(readme, encoding="utf-8").read().split("\n")

marker = re.compile(r"^<!-- example: (\S+) -->$")
failures = checked = 0
i = 0
while i < len(lines):
    m = marker.match(lines[i])
    i += 1
    if not m:
        continue
    path = m.group(1)
    if i >= len(lines) or not lines[i].startswith("```"):
        print(f"FAIL: {readme}:{i}: no code block after the marker for {path}")
        failures += 1
        continue
    end = i + 1
    while end < len(lines) and lines[end] != "```":
        end += 1
    block = "\n".join(lines[i + 1 : end]) + "\n"
    i = end + 1
    try:
        text = open(os.path.join(top, path), encoding="utf-8").read()
    except OSError as e:
        print(f"FAIL: {path}: {e}")
        failures += 1
        continue
    src = text.split("\n")
    begin = [k for k, l in enumerate(src) if "README begin" in l]
    stop = [k for k, l in enumerate(src) if "README end" in l]
    if begin and stop:
        want = textwrap.dedent("\n".join(src[begin[0] + 1 : stop[0]])) + "\n"
    else:
        want = text if text.endswith("\n") else text + "\n"
    checked += 1
    if block != want:
        failures += 1
        print(f"FAIL: the README's example for {path} is not the tested one:")
        sys.stdout.writelines(
            difflib.unified_diff(
                want.splitlines(True), block.splitlines(True), path, "README.md"
            )
        )
if checked == 0:
    print("FAIL: no `<!-- example: PATH -->` block in the README")
    failures += 1
print(f"check_readme: {checked} examples, {failures} failed")
sys.exit(1 if failures else 0)
