#!/usr/bin/env python3
"""Size limits of the code base (README, "Layout"): no Rust source file over 600 lines and no
function over 80 lines, tests aside (files under tests/, files named tests.rs, and `mod tests`
blocks are not checked). Prints every offender and exits 1 if there is one."""
import pathlib
import re
import sys

MAX_FILE, MAX_FN = 600, 80
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)\'')


def braces(line):
    """`{` minus `}` outside string and char literals and line comments."""
    line = STRINGS.sub("", line).split("//")[0]
    return line.count("{") - line.count("}")


def code_lines(lines):
    """Lines outside `#[cfg(test)] mod tests { ... }` blocks."""
    out, skip_depth, depth, pending_test = [], None, 0, False
    for no, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("#[cfg(test)]"):
            pending_test = True
        if pending_test and re.match(r"^\s*(pub\s+)?mod\s+\w+\s*\{", line):
            skip_depth, pending_test = depth, False
        elif pending_test and re.match(r"^\s*(pub\s+)?mod\s+\w+\s*;", line):
            pending_test = False
        if skip_depth is None:
            out.append((no, line))
        depth += braces(line)
        if skip_depth is not None and depth <= skip_depth:
            skip_depth = None
    return out


def long_functions(lines):
    found, i = [], 0
    while i < len(lines):
        no, line = lines[i]
        m = FN.match(line)
        if m and not line.rstrip().endswith(";"):
            depth, started, j = 0, False, i
            while j < len(lines):
                depth += braces(lines[j][1])
                started = started or "{" in STRINGS.sub("", lines[j][1]).split("//")[0]
                if started and depth <= 0:
                    break
                j += 1
            length = lines[min(j, len(lines) - 1)][0] - no + 1
            if length > MAX_FN:
                found.append((no, m.group(6), length))
        i += 1
    return found


def main():
    bad = []
    for path in sorted(pathlib.Path("crates").rglob("*.rs")):
        parts = path.parts
        if "tests" in parts or path.name == "tests.rs" or "target" in parts:
            continue
        lines = path.read_text().splitlines()
        code = code_lines(lines)
        if len(code) > MAX_FILE:
            bad.append(f"{path}: {len(code)} lines outside tests (limit {MAX_FILE})")
        for no, name, length in long_functions(code):
            bad.append(f"{path}:{no}: fn {name} is {length} lines (limit {MAX_FN})")
    print("\n".join(bad) if bad else "sizes ok: no file over 600 lines, no function over 80")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
