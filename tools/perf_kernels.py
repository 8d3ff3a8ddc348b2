#!/usr/bin/env python3
"""Where a `perf record` profile of a convnet binary spends its time, by kernel.

The kernels are compiled inside `Simd::vectorize` closures, so `perf report` names nearly
every sample `vectorize::with_avx512`. This script resolves each sampled address through
the inlining chain (`addr2line -i`) and groups samples by the project function that owns
them (the outermost frame naming a `convnet` path: `...::direct::forward_outer`, ...), or,
with `--lines TEXT`, the samples of the groups containing TEXT by their innermost project
source line.

    perf record -e cpu-clock -o perf.data target/release/convnet bench --train models/fashion_cnn.toml
    tools/perf_kernels.py perf.data target/release/convnet
    tools/perf_kernels.py perf.data target/release/convnet --lines forward_outer

Needs `perf` (Debian: linux-perf) and `addr2line` (binutils); a release build keeps line
tables (`debug = "line-tables-only"` or more in the profile). Percentages are of all
samples, the kernel's and other libraries' included.
"""

import argparse
import collections
import os
import re
import subprocess
import sys

PATH = re.compile(r"convnet[a-z_]*::[A-Za-z0-9_:]+")
# Frames that only pass a kernel along.
PLUMBING = {"vectorize", "with_avx512", "with_avx2", "with_portable", "call_mut", "call_once",
            "call", "fold", "for_each", "map", "execute", "run_inline"}


def text_mappings(data, binary):
    """(start, end, file offset) of each executable mapping of `binary`, and the samples."""
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "ip", "--show-mmap-events"],
        capture_output=True, text=True, check=True,
    ).stdout
    name = os.path.realpath(binary)
    maps, ips = [], collections.Counter()
    mmap = re.compile(r"\[0x([0-9a-f]+)\(0x([0-9a-f]+)\) @ 0x([0-9a-f]+) .*\]: r-xp (\S+)")
    for line in out.splitlines():
        if "PERF_RECORD_MMAP" in line:
            m = mmap.search(line)
            if m and os.path.realpath(m.group(4)) == name:
                start, size, off = (int(m.group(k), 16) for k in (1, 2, 3))
                maps.append((start, start + size, off))
        else:
            word = line.strip()
            if re.fullmatch(r"[0-9a-f]+", word):
                ips[int(word, 16)] += 1
    return maps, ips


def file_to_vaddr(binary):
    """Maps a file offset in an executable LOAD segment to its link-time address."""
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    segments = []
    for line in out.splitlines():
        p = line.split()
        if p[:1] == ["LOAD"] and "E" in p[6:-1]:
            segments.append((int(p[1], 16), int(p[2], 16), int(p[4], 16)))
    def convert(offset):
        for off, vaddr, size in segments:
            if off <= offset < off + size:
                return offset - off + vaddr
        return None
    return convert


def resolve(binary, addrs):
    """The inlining chain of each address: [(function, file:line)], innermost first."""
    chains = {}
    for i in range(0, len(addrs), 2000):
        batch = addrs[i:i + 2000]
        out = subprocess.run(
            ["addr2line", "-a", "-f", "-i", "-C", "-e", binary] + [hex(a) for a in batch],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        cur = None
        for line in out:
            if line.startswith("0x"):
                cur = int(line, 16)
                chains[cur] = []
            elif cur is not None:
                chain = chains[cur]
                if chain and chain[-1][1] is None:
                    chain[-1] = (chain[-1][0], line)
                else:
                    chain.append((line, None))
    return chains


SOURCES = {}
FN = re.compile(r"^\s*(?:pub(?:\([a-z]+\))? )?(?:unsafe )?fn ([a-z_][a-z0-9_]*)")


def enclosing_fn(loc):
    """The function whose body holds `file:line` (a closure's), by the nearest `fn` above."""
    path, _, line = loc.split(" ")[0].rpartition(":")
    if not line.isdigit() or not os.path.isfile(path):
        return None
    if path not in SOURCES:
        with open(path, encoding="utf-8") as f:
            SOURCES[path] = f.read().splitlines()
    for text in reversed(SOURCES[path][:int(line)]):
        m = FN.match(text)
        if m:
            return m.group(1)
    return None


def owner(chain, root):
    """The project function a sample belongs to: from the outermost frame inward, the first
    `convnet` path that is not the instruction-set plumbing (`cpu::simd`), with the method
    a trait impl names (`<f32 as ...::BnFloat>::plane_affine`); or the first frame of a
    project file named by a plain function name (inlined frames carry no path), as
    `file.rs: name`."""
    for name, loc in reversed(chain):
        for m in PATH.finditer(name):
            path = m.group(0).rstrip(":")
            if path.startswith("convnet_core::cpu::simd"):
                continue
            method = re.search(r">::(\w+)$", name)
            if method and name.startswith("<") and not path.endswith(method.group(1)):
                path += "::" + method.group(1)
            return path
        if not (loc and loc.startswith(root)) or "/cpu/simd.rs" in loc:
            continue
        base = re.sub(r"<.*>", "", name)
        if base.startswith("{closure"):
            base = enclosing_fn(loc) or base
        if re.fullmatch(r"[a-z_][a-z0-9_]*", base) and base not in PLUMBING:
            return f"{os.path.basename(loc.split(':')[0])}: {base}"
    return chain[-1][0][:80] if chain else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="perf.data from `perf record`")
    ap.add_argument("binary", help="the profiled executable")
    ap.add_argument("--lines", metavar="TEXT", help="group the samples of kernels naming TEXT by source line")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    for path in (a.data, a.binary):
        if not os.path.isfile(path):
            sys.exit(f"{path}: no such file")

    maps, ips = text_mappings(a.data, a.binary)
    total = sum(ips.values())
    if not maps or not total:
        sys.exit(f"{a.data}: no samples in an executable mapping of {a.binary}")
    convert = file_to_vaddr(a.binary)
    samples = collections.Counter()
    for ip, n in ips.items():
        for start, end, off in maps:
            if start <= ip < end:
                v = convert(ip - start + off)
                if v is not None:
                    samples[v] += n
    chains = resolve(a.binary, sorted(samples))
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    groups = collections.Counter()
    for addr, n in samples.items():
        chain = chains.get(addr, [])
        label = owner(chain, root)
        if a.lines:
            if a.lines not in label:
                continue
            here = [loc for _, loc in chain if loc and loc.startswith(root)]
            label = os.path.relpath(here[0].split(" ")[0], root) if here else "?"
        groups[label] += n
    inside = sum(samples.values())
    print(f"{total} samples, {100 * inside / total:.1f}% in {a.binary}")
    for label, n in groups.most_common(a.top):
        print(f"{100 * n / total:6.2f}%  {label}")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit(f"{e.cmd[0]} failed (exit {e.returncode}): {e.stderr.strip() if e.stderr else ''}")
    except FileNotFoundError as e:
        sys.exit(f"{e.filename}: not installed (perf: Debian linux-perf; addr2line, readelf: binutils)")
