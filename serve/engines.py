"""Generation engines behind the model deployment: ``transformers`` (default) and ``vllm``.

An engine holds one loaded model and streams ``Delta``s for one request: new text, the number of
new tokens, and at the end the finish reason ("stop" at EOS or a stop string, "length" at
max_tokens). Prompts become tokens in one place (``Prompter``), shared by both engines: a single
user turn goes through ``unlearn.models.format_prompt`` (exactly the prompt the model was trained
and evaluated on), longer conversations through the tokenizer's chat template.

* ``TransformersEngine`` runs ``model.generate`` in a thread (never on the replica's event loop),
  streams token ids back through a queue, and stops when the request is cancelled (a client
  disconnect, a guard block) through a stopping criterion. Sampling (temperature, top-p) uses a
  per-request ``torch.Generator`` seeded from ``seed``, so seeded requests repeat exactly even when
  other requests generate concurrently.
* ``VLLMEngine`` is vLLM's ``AsyncLLMEngine`` inside our model deployment (the ``vllm`` extra,
  imported only when configured). We keep our own guarded ingress rather than
  ``ray.serve.llm``'s OpenAI app: its direct-streaming mode refuses custom ingresses, and a single
  ingress keeps authentication, limits, the guard and metrics identical for both engines.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from unlearn.errors import ConfigError, ModelError

VLLM_EXTRA = "vllm"


@dataclass
class Delta:
    """New output of one request: text, tokens, and the finish reason on the last one."""

    text: str
    tokens: int
    finish: str | None = None


class PromptTooLong(Exception):
    """The prompt (plus max_tokens) does not fit the model's context or the prompt-token limit."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Prompter:
    """Prompt text and token ids for chat messages or a raw completion prompt."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def chat_text(self, messages: list[dict[str, str]]) -> str:
        """The prompt text of a conversation (ends where the assistant's answer begins)."""
        from unlearn.models import format_prompt
        from unlearn.models.prompting import QA_TEMPLATE, TINY_CHAT_TEMPLATE

        tok = self.tokenizer
        system = [m["content"] for m in messages if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"]
        if len(turns) == 1 and turns[0]["role"] == "user" and len(system) <= 1:
            return format_prompt(turns[0]["content"], tok, system[0] if system else None)
        template = getattr(tok, "chat_template", None)
        if template and template != TINY_CHAT_TEMPLATE:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # the QA format the tiny models are trained on, turn by turn
        parts = [f"{s}\n" for s in system]
        for m in turns:
            if m["role"] == "user":
                parts.append(QA_TEMPLATE.format(question=m["content"]))
            else:
                parts.append(f" {m['content'].strip()}{tok.eos_token or ''}\n")
        return "".join(parts)

    def ids(self, text: str) -> list[int]:
        """Token ids of a prompt text, BOS first (as ``encode_prompt``) unless the text has it."""
        tok = self.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        bos = tok.bos_token_id
        if bos is not None and not (tok.bos_token and text.startswith(tok.bos_token)):
            ids = [bos, *ids]
        return ids

    def encode(self, payload: dict[str, Any]) -> list[int]:
        """Token ids of a request payload (``kind`` chat or completion)."""
        if payload["kind"] == "chat":
            return self.ids(self.chat_text(payload["messages"]))
        return self.ids(payload["prompt"])


def plan_tokens(
    prompt_len: int,
    requested: int | None,
    default: int,
    context: int,
    max_prompt_tokens: int,
) -> int:
    """max_tokens for a request, or ``PromptTooLong`` naming the numbers (OpenAI's wording)."""
    if prompt_len > max_prompt_tokens:
        raise PromptTooLong(
            f"The prompt is {prompt_len} tokens; this endpoint accepts at most "
            f"{max_prompt_tokens} prompt tokens."
        )
    room = context - prompt_len
    if requested is None:
        if room < 1:
            raise PromptTooLong(
                f"This model's maximum context length is {context} tokens; the prompt alone "
                f"is {prompt_len} tokens."
            )
        return min(default, room)
    if requested > room:
        raise PromptTooLong(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_len + requested} tokens ({prompt_len} in the prompt, {requested} for the "
            "completion). Please reduce the prompt or max_tokens."
        )
    return requested


class StopStrings:
    """Cuts generated text at the first stop string, holding back what may start one."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.keep = max((len(s) for s in stops), default=1) - 1
        self.text = ""  # everything generated so far
        self.sent = 0  # characters released
        self.hit = False

    def feed(self, new: str) -> str:
        """Add generated text; return what may be released now (nothing after a stop)."""
        if self.hit:
            return ""
        start = max(0, len(self.text) - self.keep)
        self.text += new
        if self.stops:
            cut = min(
                (i for i in (self.text.find(s, start) for s in self.stops) if i >= 0),
                default=-1,
            )
            if cut >= 0:
                self.hit = True
                out, self.sent = self.text[self.sent : cut], cut
                return out
        upto = len(self.text) - self.keep if self.stops else len(self.text)
        out = self.text[self.sent : max(self.sent, upto)]
        self.sent = max(self.sent, upto)
        return out

    def flush(self) -> str:
        """The held-back tail at the end of generation (none after a stop)."""
        if self.hit:
            return ""
        out, self.sent = self.text[self.sent :], len(self.text)
        return out


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("engine_options.device is cuda but no CUDA device is visible")
    return device


class _Sampler:
    """Logits processor that samples the next token with the request's own generator.

    Temperature scales the logits, top-p keeps the smallest set of tokens whose probability
    reaches p (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration"); the sampled
    token is returned as the only finite logit, so greedy decoding picks it.
    """

    def __init__(self, temperature: float, top_p: float, seed: int | None):
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8)) >> 1)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float().cpu() / self.temperature
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            outside = sorted_p.cumsum(dim=-1) - sorted_p >= self.top_p  # mass before the token
            sorted_p = sorted_p.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        choice = torch.multinomial(probs, 1, generator=self.generator).to(scores.device)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, choice, 0.0)


class _QueueStreamer:
    """``generate`` streamer pushing each new token id to an asyncio queue (thread-safe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop = loop
        self.queue = queue
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        """Called by generate with the prompt first, then each new token."""
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ids)

    def end(self) -> None:
        """Called once at the end of generation."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class Engine:
    """What the model deployment needs of an engine."""

    prompter: Prompter
    context: int
    kind: str

    def stream(
        self, ids: list[int], sampling: dict[str, Any], max_tokens: int, request_id: str
    ) -> AsyncIterator[Delta]:
        """Generate for one request."""
        raise NotImplementedError


class TransformersEngine(Engine):
    """A Hugging Face causal LM run with ``generate`` in worker threads."""

    kind = "transformers"

    def __init__(self, path: str, options: Any):
        import torch

        from unlearn.models import load_model

        self.device = resolve_device(options.device)
        model, tokenizer = load_model(
            path, dtype=options.dtype, storage_options=options.storage_options
        )
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.prompter = Prompter(tokenizer)
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 4096)
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)
        # generations run in their own threads, so tokenization and guard work never queue
        # behind them in the default executor
        self.pool = ThreadPoolExecutor(options.max_concurrent, thread_name_prefix="generate")
        self.torch = torch

    def _generate(
        self,
        ids: list[int],
        sampling: dict[str, Any],
        max_tokens: int,
        streamer: _QueueStreamer,
        stop: threading.Event,
    ) -> None:
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        torch = self.torch
        if stop.is_set():  # cancelled while waiting for a generation thread
            streamer.end()
            return

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool)

        # ignore_eos: EOS is masked until max_tokens (an unset eos_token_id would be filled in
        # from the model's generation config, so it cannot simply be left out)
        min_new = max_tokens if sampling["ignore_eos"] else (sampling["min_tokens"] or None)
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            min_new_tokens=min_new,
            do_sample=False,
            eos_token_id=sorted(self.eos),
            pad_token_id=self.pad,
        )
        processors = []
        if sampling["temperature"] > 0:
            processors.append(
                _Sampler(sampling["temperature"], sampling["top_p"], sampling["seed"])
            )
        input_ids = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([Cancelled()]),
                streamer=streamer,
            )

    async def stream(
        self, ids: list[int], sampling: dict[str, Any], max_tokens: int, request_id: str
    ) -> AsyncIterator[Delta]:
        """Run generate in a thread; yield text as it decodes; stop it on cancellation."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        streamer = _QueueStreamer(loop, queue)
        done = loop.run_in_executor(None, self._generate, ids, sampling, max_tokens, streamer, stop)
        generated: list[int] = []
        text = ""
        try:
            while True:
                item = await queue.get()
                batch = [] if item is None else list(item)
                while item is not None and not queue.empty():  # coalesce what is waiting
                    item = queue.get_nowait()
                    if item is not None:
                        batch.extend(item)
                generated.extend(batch)
                decoded = self.tokenizer.decode(generated, skip_special_tokens=True)
                if item is None:
                    await done  # raises the thread's exception, if any
                    last = generated[-1] if generated else None
                    ended_eos = last in self.eos and not sampling["ignore_eos"]
                    finish = "stop" if ended_eos or len(generated) < max_tokens else "length"
                    yield Delta(decoded[len(text) :], len(batch), finish)
                    return
                if decoded.endswith("\ufffd"):  # a multi-byte character is incomplete
                    if batch:
                        yield Delta("", len(batch))
                    continue
                new, text = decoded[len(text) :], decoded
                yield Delta(new, len(batch))
        finally:
            stop.set()  # a cancelled request (disconnect, guard block, stop string) stops here

    def close(self) -> None:
        """Release the model (the replica's LRU evicted it and no request uses it any more)."""
        self.pool.shutdown(wait=False)
        self.model = None


class VLLMEngine(Engine):
    """vLLM's async engine for one model (GPU). Needs the ``vllm`` extra."""

    kind = "vllm"

    def __init__(self, path: str, options: Any):
        vllm = import_vllm()
        from unlearn import storage
        from unlearn.models import load_tokenizer

        local = path
        if storage.is_remote(path):
            import tempfile

            local = str(
                storage.download_dir(
                    path, tempfile.mkdtemp(prefix="unlearn-vllm-"), options.storage_options
                )
            )
        self.tokenizer = load_tokenizer(local)
        self.prompter = Prompter(self.tokenizer)
        args = vllm.AsyncEngineArgs(
            model=local,
            tokenizer=local,
            dtype=options.dtype or "auto",
            gpu_memory_utilization=options.gpu_memory_utilization,
            max_model_len=options.max_model_len,
            seed=0,
        )
        self.engine = vllm.AsyncLLMEngine.from_engine_args(args)
        self.context = int(self.engine.model_config.max_model_len)
        self.vllm = vllm

    async def stream(
        self, ids: list[int], sampling: dict[str, Any], max_tokens: int, request_id: str
    ) -> AsyncIterator[Delta]:
        """vLLM streams cumulative outputs; yield the new part of each."""
        params = self.vllm.SamplingParams(
            max_tokens=max_tokens,
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            seed=sampling["seed"],
            stop=sampling["stop"] or None,
            ignore_eos=sampling["ignore_eos"],
            min_tokens=sampling["min_tokens"],
        )
        prompt = self.vllm.TokensPrompt(prompt_token_ids=ids)
        text, n = "", 0
        # cancelling this generator (disconnect, guard block) makes vLLM abort the request
        async for out in self.engine.generate(prompt, params, request_id):
            o = out.outputs[0]
            new_text, new_n = o.text[len(text) :], len(o.token_ids) - n
            text, n = o.text, len(o.token_ids)
            finish = o.finish_reason if out.finished else None
            if finish not in (None, "stop", "length"):
                finish = "stop"  # "abort" only reaches us when we cancelled
            yield Delta(new_text, new_n, finish)
            if out.finished:
                return

    def close(self) -> None:
        """Shut the engine down (frees its GPU memory)."""
        self.engine.shutdown()


def import_vllm() -> Any:
    """The ``vllm`` module, or a ``ConfigError`` naming the extra to install."""
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            f"engine 'vllm' needs vLLM, which is not installed here ({exc}). Install the "
            f"optional extra on a GPU machine: pip install 'unlearn[{VLLM_EXTRA}]' (or use "
            "--engine transformers)"
        ) from None
    return vllm


ENGINES = {"transformers": TransformersEngine, "vllm": VLLMEngine}


def load_engine(kind: str, path: str, options: Any) -> Engine:
    """Load the model at ``path`` into an engine of ``kind``; errors name the model."""
    if kind not in ENGINES:
        raise ConfigError(f"engine {kind!r} is unknown (known: {', '.join(ENGINES)})")
    started = time.perf_counter()
    try:
        engine = ENGINES[kind](path, options)
    except (ConfigError, ModelError):
        raise
    except Exception as exc:
        raise ModelError(f"cannot load model {path} with the {kind} engine: {exc}") from exc
    engine.load_seconds = time.perf_counter() - started
    return engine
