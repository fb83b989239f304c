"""A local model through `transformers`: requests that arrive together (and share their sampling settings) are
generated as one left-padded batch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from llm_feedback.adapters import with_adapter
from llm_feedback.errors import ConfigError
from llm_feedback.llm.base import Completion, PermanentError, Request, cut_at_stop
from llm_feedback.params import ModelSpec
from llm_feedback.secrets import scrub

# How long the batcher waits for more requests to fill a batch once one has arrived.
FILL_WAIT_S = 0.01
# One model loads at a time: transformers' lazy imports are not safe in two threads at once (peft, loading an
# adapter, imports parts of transformers while another model's thread does), and loads share the disk anyway.
_LOADING = threading.Lock()


class TransformersBackend:
    def __init__(self, name: str, spec: ModelSpec, batch_size: int, *, token: str | None = None) -> None:
        self._name, self._spec, self._batch_size, self._token = name, spec, batch_size, token
        self._queue: asyncio.Queue[tuple[Request, asyncio.Future[Completion]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    async def complete(self, request: Request) -> Completion:
        if request.prompt is None:
            raise PermanentError("no templated prompt: rerun the format stage")
        async with self._start_lock:
            if self._worker is None:
                await asyncio.to_thread(self._load)
                self._worker = asyncio.create_task(self._work())
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), FILL_WAIT_S))
                except TimeoutError:
                    break
            # One model.generate call takes one set of sampling settings: requests that differ go in turns.
            groups: dict[str, list[tuple[Request, asyncio.Future[Completion]]]] = {}
            for request, future in batch:
                if not future.cancelled():
                    groups.setdefault(request.generation.model_dump_json(), []).append((request, future))
            for group in groups.values():
                await self._run(group)

    async def _run(self, group: list[tuple[Request, asyncio.Future[Completion]]]) -> None:
        try:
            completions = await asyncio.to_thread(self._generate, [request for request, _ in group])
        except Exception as e:  # noqa: BLE001 (an out-of-memory or a bad input fails this batch, not the run)
            for _, future in group:
                if not future.done():
                    future.set_exception(PermanentError(scrub(f"{type(e).__name__}: {e}")[:300]))
            return
        for (_, future), completion in zip(group, completions):
            if not future.done():
                future.set_result(completion)

    def _load(self) -> None:
        with _LOADING:
            self._load_alone()

    def _load_alone(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self._spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(
                self._spec.tokenizer or self._spec.model, token=self._token, padding_side="left"
            )
            model = AutoModelForCausalLM.from_pretrained(self._spec.model, token=self._token, dtype="auto")
            if self._spec.adapter is not None:
                model = with_adapter(model, name=self._name, spec=self._spec, token=self._token)
            self._model = model.to(device)
        except ConfigError:  # the adapter's own line
            raise
        except Exception as e:  # noqa: BLE001 (whatever transformers raises, one line naming the model)
            raise ConfigError(
                f"params.yaml: models.{self._name}: cannot load '{self._spec.model}' ({_first_line(e)})"
            ) from None
        self._model.eval()
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def _generate(self, requests: list[Request]) -> list[Completion]:
        """One batch of requests that share their sampling settings."""
        import torch

        gen = requests[0].generation
        tokenizer, model = self._tokenizer, self._model
        inputs = tokenizer(
            [r.prompt for r in requests], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        sampling = (
            {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p}
            if gen.temperature > 0
            else {"do_sample": False}
        )
        if gen.seed is not None:
            torch.manual_seed(gen.seed)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=gen.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=gen.stop or None,
                tokenizer=tokenizer if gen.stop else None,
                **sampling,
            )
        prompt_width = inputs["input_ids"].shape[1]
        ends = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        completions = []
        for row, new_tokens in enumerate(output[:, prompt_width:].tolist()):
            length = next((i for i, token in enumerate(new_tokens) if token in ends), None)
            ended = length is not None
            tokens = new_tokens[:length] if ended else new_tokens
            text, stopped = cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), gen.stop)
            finish = "length" if not (ended or stopped) and len(tokens) >= gen.max_new_tokens else "stop"
            completions.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(inputs["attention_mask"][row].sum()),
                    completion_tokens=len(tokens),
                )
            )
        return completions


def _first_line(error: Exception) -> str:
    """Scrubbed before it is cut short: a hub error may quote the request's headers."""
    lines = scrub(str(error)).splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]
