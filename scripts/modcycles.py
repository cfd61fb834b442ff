#!/usr/bin/env python3
"""Lists import cycles between the crate's modules.

Every `crate::`/`super::`/`self::` path in non-test code is an edge from the file that
names it to the module file that defines the item (re-exports are followed to the
defining module, so a facade `pub use` in a mod.rs does not hide or invent a cycle).
Prints the strongly connected components of the file graph (cycles inside a folder and
across folders), then those of the top-level module graph (cycles between folders).

Usage: scripts/modcycles.py [SRC_DIR]   (exit status 1 when a cross-folder cycle exists)
"""

import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")

ITEM = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+|const\s+|unsafe\s+)*"
    r"(?:struct|enum|fn|const|static|type|trait|union|mod)\s+(\w+)",
    re.M,
)
MACRO = re.compile(r"macro_rules!\s*(\w+)")
USE = re.compile(r"^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M)
PATH = re.compile(r"\b(?:crate|super|self)(?:::\w+)+")
BARE = re.compile(r"(?<![:\w])(?!crate\b|super\b|self\b)\w+(?:::\w+)+")


def module_files(src):
    """Maps module path (tuple) -> file path."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if parts and (parts[-1] == "tests" or parts[-1].endswith("_tests")):
                continue
            mods[tuple(parts)] = os.path.join(root, f)
    return mods


def strip_tests(text):
    """Drops `#[cfg(test)]` items: a test module's imports are not part of the layering."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*(\{|;)", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        if m.group(1) == ";":
            i = m.end()
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    text = "".join(out)
    text = re.sub(r"//[^\n]*", "", text)
    return text


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"\s+as\s+\w+$", "", tree).strip()]
    prefix = tree[:brace]
    body = tree[brace + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    res = []
    for p in parts:
        if p.strip():
            for e in expand(p):
                res.append(prefix + e if e != "self" else prefix.rstrip(":"))
    return res


def absolute(mod, path):
    segs = path.split("::")
    if segs[0] == "crate":
        return segs[1:]
    base = list(mod)
    while segs and segs[0] in ("super", "self"):
        if segs[0] == "super":
            base = base[:-1]
        segs = segs[1:]
    return base + segs


def main():
    mods = module_files(SRC)
    texts = {m: strip_tests(open(f, encoding="utf-8").read()) for m, f in mods.items()}
    defined = {m: set(ITEM.findall(t)) | set(MACRO.findall(t)) for m, t in texts.items()}
    reexports = {}
    for m, t in texts.items():
        r = {}
        for vis, tree in USE.findall(t):
            if not vis:
                continue
            for p in expand(tree):
                name = p.split("::")[-1]
                r[name] = absolute(m, p)
        reexports[m] = r

    def resolve(segs, seen=0):
        """Longest module prefix of segs; follows re-exports to the defining module."""
        for k in range(len(segs), -1, -1):
            m = tuple(segs[:k])
            if m in mods:
                rest = segs[k:]
                if rest and rest[0] not in defined[m] and rest[0] in reexports[m] and seen < 8:
                    return resolve(reexports[m][rest[0]] + rest[1:], seen + 1)
                return m
        return None

    edges = {m: set() for m in mods}
    for m, t in texts.items():
        paths = []
        for vis, tree in USE.findall(t):
            paths += expand(tree)
        body = USE.sub("", t)
        paths += PATH.findall(body)
        # A mod.rs names its children without a prefix (`parse::Builder`).
        paths += [p for p in BARE.findall(body) if tuple(list(m) + [p.split("::")[0]]) in mods]
        # `use super::x;` then `x::y` in the body: plain relative names are seen through
        # the `use`, which is already an edge.
        for p in paths:
            if not re.match(r"(crate|super|self)\b", p):
                # `use parse::x` from a mod.rs names a child module.
                first = p.split("::")[0]
                if tuple(list(m) + [first]) in mods:
                    p = "self::" + p
                else:
                    continue
            target = resolve(absolute(m, p))
            if target is not None and target != m:
                edges[m].add(target)

    def sccs(graph):
        index, low, stack, on, out = {}, {}, [], set(), []
        counter = [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(graph[v]):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        sys.setrecursionlimit(10000)
        for v in sorted(graph):
            if v not in index:
                visit(v)
        return out

    name = lambda m: "::".join(m) or "crate"
    print("file-level cycles:")
    for comp in sccs(edges):
        inner = {m: [w for w in edges[m] if w in comp] for m in comp}
        print("  " + ", ".join(name(m) for m in comp))
        for m in comp:
            print("      %s -> %s" % (name(m), ", ".join(sorted(name(w) for w in inner[m]))))
    top = {}
    for m, ws in edges.items():
        a = m[:1]
        top.setdefault(a, set())
        for w in ws:
            if w[:1] != a:
                top[a].add(w[:1])
                top.setdefault(w[:1], set())
    cross = sccs(top)
    print("folder-level cycles:")
    for comp in cross:
        print("  " + ", ".join(name(m) for m in comp))
        for a in comp:
            why = sorted(
                "%s -> %s" % (name(m), name(w))
                for m, ws in edges.items()
                if m[:1] == a
                for w in ws
                if w[:1] in comp and w[:1] != a
            )
            for line in why:
                print("      " + line)
    return 1 if cross else 0


if __name__ == "__main__":
    sys.exit(main())
