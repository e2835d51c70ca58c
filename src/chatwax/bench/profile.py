"""Summarize py-spy's collapsed stacks (`chatwax bench --profile`): where each thread of a
dataflow process spends its busy samples.

    python -m chatwax.bench.profile artifacts/bench/profiles/*.txt

For each file: samples per thread, then the functions with the most samples in them
(inclusive) and at the top of the stack (self), as shares of the process's busy samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_THREAD = re.compile(r"^thread \((?:0x)?[0-9a-f]+\)(?::\s*(?P<name>.*))?$")
_FRAME = re.compile(r"^(?P<fn>.+?) \((?P<where>[^)]*)\)$")


@dataclass
class Profile:
    total: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)


def _frame(text: str) -> str:
    m = _FRAME.match(text)
    if not m:
        return text
    where = m.group("where").rsplit(":", 1)[0]
    return f"{m.group('fn')} ({where})"


def parse(text: str) -> Profile:
    """One collapsed-stack file: `thread (id): name;frame;frame ... count` per line."""
    p = Profile()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        head = _THREAD.match(frames[0])
        thread = (head.group("name") or "unnamed") if head else "unnamed"
        body = [_frame(f) for f in (frames[1:] if head else frames)]
        p.total += n
        p.threads[thread] += n
        for f in set(body):
            p.inclusive[f] += n
        if body:
            p.own[body[-1]] += n
    return p


def report(p: Profile, top: int = 15, only: str = "chatwax/") -> str:
    def share(n: int) -> str:
        return f"{100 * n / max(p.total, 1):5.1f} %"

    lines = [f"busy samples: {p.total}"]
    lines += [f"  {share(n)}  thread {name}" for name, n in p.threads.most_common()]
    lines.append(f"inclusive ({only} frames):")
    lines += [f"  {share(n)}  {f}" for f, n in p.inclusive.most_common()
              if only in f][:top]
    lines.append("self (any frame):")
    lines += [f"  {share(n)}  {f}" for f, n in p.own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chatwax.bench.profile",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    for f in args.files:
        print(f"== {f.name}")
        print(report(parse(f.read_text()), args.top))


if __name__ == "__main__":
    main()
