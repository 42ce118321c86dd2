"""Groups a heaptrack peak flamegraph (demangled, one stack per line ending in its byte count)
by the innermost tsrelay source frames that are not allocation plumbing, and prints the largest
groups. Used by scripts/bench-heap."""
import collections
import pathlib
import re
import sys

PLUMBING = re.compile(
    r"^(poll|call|with|try|catch|do_call|run_task|budget|\{closure|\{async|from_iter|collect|alloc|allocate|"
    r"grow|finish_grow|reserve|new_unin|fallible|prepare_resize|resize_inner|insert<|find_or|push<|push_mut|"
    r"get_or_insert|spec|extend|to_vec|copy|clone|resize<|extend_with|do_reserve|grow_amort|grow_one|"
    r"reserve_exact|grow_exact|with_capacity|from_elem)"
)
FILE = re.compile(r"\((\w+\.rs)\)$")
# Source files of ours by name; `mod.rs` is everyone's, so those frames need our crate's path.
OURS = {p.name for p in pathlib.Path(__file__).resolve().parents[2].joinpath("src").rglob("*.rs")} - {"mod.rs", "lib.rs"}


def ours(frame):
    if frame.startswith(("__rustc", "<", "std::", "core::", "alloc::")) or PLUMBING.match(frame):
        return False
    if frame.startswith("tsrelay::"):
        return True
    m = FILE.search(frame)
    return bool(m) and m.group(1) in OURS


def main(path, top):
    groups = collections.Counter()
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        frames = [re.sub(r"::h[0-9a-f]{16}|\[[0-9a-f]+\]", "", f).strip() for f in stack.split(";") if f.strip()]
        mine = [f for f in frames if ours(f)]
        key = " < ".join(reversed(mine[-3:])) if mine else "(outside tsrelay) " + " < ".join(reversed(frames[-3:]))
        groups[key[:180]] += int(count)
    print(f"heap at its peak: {sum(groups.values()) / 1048576:.1f} MiB")
    for key, n in groups.most_common(top):
        print(f"{n / 1048576:8.2f} MiB  {key}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
