# SPDX-License-Identifier: MIT
"""The documentation's C code compiles as written, and every source file
carries its license line.

C code blocks are found in the man pages (man/*.1, *.3, *.8: .EX/.EE
blocks) and in the Markdown files (README.md, docs/, examples/: ```c
blocks).  The doc source marks each one, on the line before it:

  man page:   .\\" test: c program     or   .\\" test: c fragment
  Markdown:   <!-- test: c program -->  or   <!-- test: c fragment -->

A program is compiled as it is.  A fragment is a list of statements with
its own #include lines: the includes stay at the top and the rest becomes
the body of `int main(int argc, char *argv[])`.  Nothing else is added, so
a header the code needs but does not name fails the test (that is how
`O_RDONLY undeclared` was found in libcapshm(3)).  A man page block that
looks like C but is not marked fails too, so new examples cannot slip by.
libcapshm(3)'s SYNOPSIS is compiled as well: its #include lines and
declarations, and a main() that calls each function as a reader of the
page would.  Everything is compiled against the build tree's capshm.h and
linked with its libcapshm.
"""
import os
import re
import shlex
import subprocess

import pytest

from capshm_test import INCDIR, LIBDIR, ROOT, SAN_CFLAGS

MAN = [os.path.join(ROOT, "man", f) for f in sorted(os.listdir(os.path.join(ROOT, "man")))
       if re.search(r"\.[138]$", f)]
MARKDOWN = [os.path.join(ROOT, "README.md")] + [
    os.path.join(ROOT, d, f) for d in ("docs", "examples") if os.path.isdir(os.path.join(ROOT, d))
    for f in sorted(os.listdir(os.path.join(ROOT, d))) if f.endswith(".md")]

MAN_MARK = re.compile(r'^\.\\"\s*test:\s*c (program|fragment)\s*$')
MD_MARK = re.compile(r"^<!--\s*test:\s*c (program|fragment)\s*-->\s*$")

# Unmarked man page blocks that look like C: an #include, or a declaration or
# statement ending in ";" that starts with a C type.
LOOKS_LIKE_C = re.compile(r"^\s*(#include\b|(int|char|void|size_t|ssize_t|const|struct|"
                          r"unsigned|static|off_t|mode_t)\b[^\n]*[;{]\s*(/\*.*)?$)", re.M)


def unroff(text):
    """The characters a man page's source shows for roff escapes."""
    for esc, ch in (("\\-", "-"), ("\\(aq", "'"), ("\\(dq", '"'), ("\\(rs", "\\"),
                    ("\\&", ""), ("\\%", ""), ("\\e", "\\")):
        text = text.replace(esc, ch)
    return text


def man_blocks(path):
    """[(where, kind or None, code)] of the .EX/.EE blocks of a man page."""
    with open(path) as f:
        lines = f.read().split("\n")
    out = []
    for i, line in enumerate(lines):
        if line.strip() != ".EX":
            continue
        kind = None
        j = i - 1
        while j >= 0 and re.match(r"^\.(in|PP|RS|IP)\b", lines[j]):
            j -= 1
        if j >= 0 and MAN_MARK.match(lines[j]):
            kind = MAN_MARK.match(lines[j]).group(1)
        end = lines.index(".EE", i)
        out.append(("%s:%d" % (os.path.relpath(path, ROOT), i + 1), kind,
                    unroff("\n".join(lines[i + 1:end]))))
    return out


def markdown_blocks(path):
    """[(where, kind or None, code)] of the ```c blocks of a Markdown file."""
    with open(path) as f:
        lines = f.read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        if re.match(r"^```\s*c\s*$", lines[i]):
            end = i + 1
            while not lines[end].startswith("```"):
                end += 1
            m = MD_MARK.match(lines[i - 1]) if i else None
            out.append(("%s:%d" % (os.path.relpath(path, ROOT), i + 1),
                        m.group(1) if m else None, "\n".join(lines[i + 1:end])))
            i = end
        i += 1
    return out


def c_blocks():
    blocks = []
    for p in MAN:
        blocks += [b for b in man_blocks(p) if b[1] or LOOKS_LIKE_C.search(b[2])]
    for p in MARKDOWN:
        blocks += markdown_blocks(p)
    return blocks


BLOCKS = c_blocks()


def as_program(kind, code):
    if kind == "program":
        return code
    head = [ln for ln in code.split("\n") if ln.lstrip().startswith("#")]
    body = [ln for ln in code.split("\n") if not ln.lstrip().startswith("#")]
    return ("\n".join(head) + "\n\nint\nmain(int argc, char *argv[])\n{\n"
            "    (void)argc;\n    (void)argv;\n" +
            "\n".join("    " + ln for ln in body) + "\n    return 0;\n}\n")


def compile_c(tmp_path, source, warnings):
    src = tmp_path / "block.c"
    src.write_text(source)
    r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror"] + warnings +
                       ["-I", INCDIR, "-o", str(tmp_path / "block"), str(src),
                        "-L", LIBDIR, "-lcapshm"] + SAN_CFLAGS,
                       capture_output=True, text=True, timeout=60)
    return r


def test_docs_have_c_blocks():
    """The search finds the blocks it should (libcapshm(3) and README)."""
    where = [b[0] for b in BLOCKS]
    assert any(w.startswith("man/libcapshm.3") for w in where), where
    assert any(w.startswith("README.md") for w in where), where


@pytest.mark.parametrize("where,kind,code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_c_block_compiles_as_written(tmp_path, where, kind, code):
    assert kind, ("%s looks like C but is not marked as a c program or c fragment "
                  "(see tests/integration/test_docs.py):\n%s" % (where, code))
    # Fragments show a few lines of a program: unused variables are expected.
    warnings = ["-Wno-unused"] if kind == "fragment" else []
    source = as_program(kind, code)
    r = compile_c(tmp_path, source, warnings)
    assert r.returncode == 0, "%s does not compile as written:\n%s\n--- as compiled:\n%s" % (
        where, r.stderr, source)


def synopsis(path):
    """The C text of a man page's SYNOPSIS (.nf ... .fi, with font macros)."""
    with open(path) as f:
        roff = f.read()
    block = roff.split(".SH SYNOPSIS\n", 1)[1].split("\n.SH ", 1)[0]
    out = []
    for line in block.split("\n"):
        if line.startswith((".nf", ".fi", ".PP", ".in", '.\\"')):
            continue
        m = re.match(r"^\.(B|I|BI|IB|BR|RB|IR|RI)\s+(.*)$", line)
        if m:
            args = shlex.split(m.group(2), posix=True)
            # .B and .I join their arguments with spaces; .BI and the like
            # alternate fonts between arguments with nothing in between.
            line = (" " if m.group(1) in ("B", "I") else "").join(args)
        out.append(unroff(line))
    return "\n".join(out)


def test_libcapshm_synopsis_compiles(tmp_path):
    """A program that follows libcapshm(3)'s SYNOPSIS and nothing else."""
    syn = synopsis(os.path.join(ROOT, "man", "libcapshm.3"))
    assert "#include <capshm.h>" in syn, syn
    # The #define restates the header's; the prototypes redeclare its functions.
    decls = "\n".join(ln for ln in syn.split("\n") if not ln.startswith("#define"))
    source = decls + r'''

int
main(void)
{
    char name[CAPSHM_NAME_BUF], ro[CAPSHM_NAME_BUF];
    int fd = capshm_create(NULL, 4096, S_IRUSR | S_IWUSR, name);
    int fd2 = capshm_open(NULL, name, O_RDONLY);
    int fd3 = capshm_open("/run/capshm", name, O_RDWR | O_NOFOLLOW);
    return capshm_ro_name(fd, ro) + fd + fd2 + fd3;
}
'''
    r = compile_c(tmp_path, source, [])
    assert r.returncode == 0, "the SYNOPSIS does not compile:\n%s\n--- as compiled:\n%s" % (
        r.stderr, source)
    # The #define it shows is the header's.
    m = re.search(r"#define CAPSHM_NAME_BUF (\d+)", syn)
    with open(os.path.join(INCDIR, "capshm.h")) as f:
        assert m and ("#define CAPSHM_NAME_BUF %s\n" % m.group(1)) in f.read()


# --- license lines ------------------------------------------------------------

SPDX = "SPDX-License-Identifier: MIT"
SOURCE_EXT = (".c", ".h", ".py", ".js", ".mjs", ".cjs", ".sh", ".am", ".ac", ".cc", ".cpp", ".go",
              ".java", ".rb", ".pl")
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".libs", ".deps", "autom4te.cache",
             "build-aux", "m4", ".pytest_cache", "corpus"}


def source_files():
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and x != "build"
                   and not x.startswith("build-")]
        for f in files:
            p = os.path.join(d, f)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            try:
                with open(p, "rb") as fh:
                    head = fh.read(2048)
            except OSError:
                continue
            if b"Generated by" in head or b"generated by" in head:
                continue        # configure, libtool wrappers, Makefile.in of an in-tree build
            if f.endswith(SOURCE_EXT) or f == "Makefile" or (
                    head.startswith(b"#!") and os.access(p, os.X_OK)):
                yield p, head


def test_every_source_file_has_an_spdx_line():
    """LICENSE: MIT; each source file says so in one of its first lines."""
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert f.readline().strip() == "MIT License"
    missing = [os.path.relpath(p, ROOT) for p, head in source_files()
               if SPDX.encode() not in b"\n".join(head.split(b"\n")[:3])]
    assert not missing, "no %r in the first lines of: %s" % (SPDX, " ".join(missing))
