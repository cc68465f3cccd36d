#!/usr/bin/env python3
"""The statuses include/mp_throttle.h documents for each function, as C.

    python3 tests/gen_statuses.py include/mp_throttle.h build/fuzz/statuses.h

writes a table that tests/c/fuzz_api.c checks every status it gets back
against (the Makefile's rule for the fuzzer runs this), so the header's doc
comments stay the single source of truth: no list is copied by hand.

The functions are those the header declares: every `mpt_name(` outside a
comment, found as tests/abi.rs finds them (which checks that they are exactly
the library's exports). For each one that returns an mpt_status, its doc
comment (the /** ... */ just before the declaration) must hold one paragraph
that begins "Returns:" (or "Returns, ...:"); its statuses are every
MPT_STATUS_ name in that paragraph and, if the paragraph's text after the
colon begins with "as `mpt_other`", every status of mpt_other's paragraph
(followed through any number of such references). MPT_STATUS_PANIC is listed
by none: the header's preamble says that any call may return it (a bug).

Fails, naming the function, if a paragraph is missing, names no status or an
unknown one, or refers to a function without a paragraph (or in a circle).
"""

import os
import re
import sys

NAME = re.compile(r"(?<![A-Za-z0-9_])(mpt_[A-Za-z0-9_]+)\(")
STATUS = re.compile(r"\bMPT_STATUS_[A-Z0-9_]+\b")
REFERENCE = re.compile(r"\s*as\s+`(mpt_[A-Za-z0-9_]+)`")


class Problem(Exception):
    pass


def statuses_of_enum(text):
    """The mpt_status enum: {name: value}, values 0..n-1."""
    m = re.search(r"enum mpt_status\b[^{;]*\{(.*?)\}", text, re.S)
    if m is None:
        raise Problem("no `enum mpt_status { ... }` in the header")
    values = {
        name: int(value)
        for name, value in re.findall(r"\b(MPT_STATUS_[A-Z0-9_]+)\s*=\s*(\d+)", m.group(1))
    }
    if sorted(values.values()) != list(range(len(values))) or not values:
        raise Problem(f"mpt_status values are not 0..n-1: {values}")
    if len(values) > 32:
        raise Problem("more than 32 statuses: the table's bit masks are 32 bits")
    return values


def doc_text(block):
    """The lines of a /** ... */ block without the comment markers."""
    out = []
    for line in block:
        s = line.strip()
        if s.startswith("/**"):
            s = s[3:]
        if s.endswith("*/"):
            s = s[:-2]
        s = s.strip()
        if s.startswith("*"):
            s = s[1:]
        out.append(s.strip())
    return out


def paragraphs(lines):
    paras, cur = [], []
    for line in lines:
        if line:
            cur.append(line)
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    if cur:
        paras.append(" ".join(cur))
    return paras


def declarations(text):
    """[(name, returns_status, doc lines or None, line number)] in header order."""
    found = []
    doc = None  # the last /** */ block, while only declaration text follows it
    since_doc = ""  # code since that block
    block = None  # the comment being read
    for number, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if block is not None:
            block.append(line)
            if "*/" in s:
                if block[0].strip().startswith("/**"):
                    doc, since_doc = block, ""
                block = None
            continue
        if s.startswith("/*"):
            if "*/" in s[2:]:
                if s.startswith("/**"):
                    doc, since_doc = [line], ""
                continue
            block = [line]
            continue
        if s.startswith("*") or s.startswith("//"):
            continue
        for m in NAME.finditer(line):
            before = since_doc + line[: m.start()]
            # The doc comment belongs to this declaration only if nothing
            # but its return type and attributes came between.
            own = doc if doc is not None and not re.search(r"[;{}#]", before) else None
            returns_status = re.search(r"\bmpt_status\s*$", before) is not None
            found.append((m.group(1), returns_status, own, number))
        since_doc += line + "\n"
        if re.search(r"[;{}]", line):
            doc = None
    return found


def table(text):
    values = statuses_of_enum(text)
    decls = declarations(text)
    names = [d[0] for d in decls]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise Problem(f"declared more than once: {', '.join(dupes)}")
    if len(decls) < 20:
        raise Problem(f"found only {len(decls)} functions in the header: {names}")

    own = {}  # name -> (statuses named in its paragraph, referenced function or None)
    problems = []
    for name, returns_status, doc, number in decls:
        if not returns_status:
            continue
        where = f"{name} (line {number})"
        if doc is None:
            problems.append(f"{where}: no doc comment right before its declaration")
            continue
        found = [p for p in paragraphs(doc_text(doc)) if re.match(r"Returns\s*[:,]", p)]
        if len(found) != 1:
            problems.append(
                f"{where}: its doc comment has {len(found)} paragraphs that begin "
                "\"Returns:\" (or \"Returns, ...:\"); it needs exactly one"
            )
            continue
        para = found[0]
        body = para.split(":", 1)[1] if ":" in para else ""
        ref = REFERENCE.match(body)
        listed = STATUS.findall(para)
        unknown = sorted({s for s in listed if s not in values})
        if unknown:
            problems.append(f"{where}: unknown status {', '.join(unknown)} in \"{para}\"")
            continue
        if not listed and ref is None:
            problems.append(f"{where}: its Returns: paragraph names no status: \"{para}\"")
            continue
        own[name] = (set(listed), ref.group(1) if ref else None)

    resolved = {}

    def resolve(name, chain):
        """The statuses of `name`, reached through the references `chain`."""
        if name in resolved:
            return resolved[name]
        if name in chain:
            raise Problem(f"{chain[0]}: Returns: refers in a circle: {' -> '.join(chain + [name])}")
        if name not in own:
            raise Problem(
                f"{chain[-1]}: its Returns: paragraph says \"as `{name}`\", which has no "
                "Returns: paragraph of its own (or is not declared)"
            )
        listed, ref = own[name]
        statuses = set(listed)
        via = []
        if ref is not None:
            more, more_via = resolve(ref, chain + [name])
            statuses |= more
            via = [ref] + more_via
        resolved[name] = (statuses, via)
        return resolved[name]

    if problems:
        raise Problem("\n".join(problems))
    rows = []
    for name, returns_status, _doc, _number in decls:
        if returns_status:
            statuses, via = resolve(name, [])
        else:
            statuses, via = set(), []
        rows.append((name, returns_status, sorted(statuses, key=values.get), via))
    return values, rows


def render(values, rows, source):
    names = sorted(values, key=values.get)
    out = [
        f"/* Generated by tests/gen_statuses.py from {source}: do not edit.",
        " * For each function the header declares, the statuses its doc comment's",
        ' * "Returns:" paragraph lists (references "as `mpt_x`" followed). */',
        "#ifndef MPT_FUZZ_STATUSES_H",
        "#define MPT_FUZZ_STATUSES_H",
        "",
        "#include <stdint.h>",
        "",
        "/* Every mpt_status, by value: its name without MPT_STATUS_. */",
        f"#define DOC_NSTATUS {len(names)}",
        "static const char *const doc_status_name[DOC_NSTATUS] = {",
    ]
    out += [f'    "{n[len("MPT_STATUS_"):]}",' for n in names]
    out += [
        "};",
        "",
        "struct doc_fn {",
        "    const char *name;",
        "    int returns_status; /* 0: returns no mpt_status (no list) */",
        "    uint32_t statuses;  /* bit s: status s is listed */",
        '    const char *via;    /* "as `mpt_x`" references followed, or "" */',
        "};",
        "",
        f"#define DOC_NFN {len(rows)}",
        "static const struct doc_fn doc_fn[DOC_NFN] = {",
    ]
    for name, returns_status, statuses, via in rows:
        mask = " | ".join(f"(1u << {s})" for s in statuses) or "0u"
        via_text = ", ".join(f"as `{v}`" for v in via)
        out.append(f'    {{"{name}", {int(returns_status)}, {mask}, "{via_text}"}},')
    out += ["};", "", "#endif", ""]
    return "\n".join(out)


def main(argv):
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    header, target = argv[1], argv[2]
    with open(header, encoding="utf-8") as f:
        text = f.read()
    try:
        values, rows = table(text)
    except Problem as e:
        print(f"gen_statuses.py: {header}:\n{e}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(render(values, rows, header))
    os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
