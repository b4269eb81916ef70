"""Tables and charts read by a vision-language model: batching, validation, one repair.

A model engine only says how to run one batched ``generate`` over conversations
(``VisionLanguageExtractor.generate``); everything else is shared here:

* regions are grouped by kind (one prompt, one token limit per kind) and, within
  a kind, by size, so a batch pads little;
* a CUDA out-of-memory error halves the batch and retries it, and the engine
  keeps the smaller size: the GPU will not grow back;
* each answer is validated (``region_prompts``); an invalid one gets one repair
  turn that tells the model what was wrong; if that fails too the region is
  ``failed`` with the error and both raw answers kept. An answer cut off by the
  token limit is not repaired (the limit would cut the repair as well).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from docintel.document.charts import ChartData
from docintel.document.tables import Table
from docintel.engines.base import EngineConfig, EngineError, RegionInput, RegionResult, rgb
from docintel.engines.region_prompts import (
    PROMPT_VERSION,
    PROMPTS,
    InvalidAnswer,
    parse_answer,
    repair_prompt,
)
from docintel.engines.torch_runtime import free_memory, shrinking_batches
from docintel.geometry import RegionKind

log = logging.getLogger(__name__)

# Output budgets: a dense table of 40 rows x 8 columns is ~1,500 tokens of
# Markdown; a chart's JSON with a few series of a dozen points is well under 1,000.
DEFAULT_MAX_NEW_TOKENS: dict[RegionKind, int] = {"table": 2048, "chart": 1024}
REPAIR_MARKER = "\n\n--- repair answer ---\n"


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str


Conversation = tuple[Turn, ...]
"""Turns in order; the region's image belongs to the first user turn, before its text."""


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    new_tokens: int
    truncated: bool  # the token limit ended it, not the model


def decode_answer(tokens: Sequence[int], eos: Collection[int], tokenizer: Any) -> Answer:
    """One row of new tokens as an answer: up to its first end token; none means the
    token limit cut it (generation stops only when every row has ended or at the limit)."""
    end = next((i for i, token in enumerate(tokens) if token in eos), None)
    kept = list(tokens if end is None else tokens[:end])
    text = tokenizer.decode(kept, skip_special_tokens=True)
    return Answer(text=text.strip(), new_tokens=len(kept), truncated=end is None)


@dataclass(slots=True)
class RunStats:
    """What the last ``extract`` call did; for logs and the benchmark."""

    regions: int = 0
    batches: int = 0
    repairs: int = 0
    oom_retries: int = 0
    generated_tokens: int = 0
    failed: int = 0


@dataclass(slots=True)
class _Job:
    index: int
    kind: RegionKind
    image: Image.Image
    conversation: Conversation
    first_answer: str | None = None  # set on a repair job
    first_error: str | None = None


@dataclass(slots=True)
class _Options:
    max_new_tokens: dict[RegionKind, int] = field(default_factory=dict)
    repair: bool = True


class VisionLanguageExtractor:
    """The shared half of a VLM extraction engine; subclasses implement ``generate``."""

    name: str = "vlm"
    model_id: str = ""  # stored with every result
    device: str = "cpu"

    def __init__(self, config: EngineConfig) -> None:
        self.batch_size = max(1, int(config.batch_size))
        self.max_batch = self.batch_size
        self.options = _Options(
            max_new_tokens={
                kind: config.int_option(f"{kind}_max_new_tokens", default)
                for kind, default in DEFAULT_MAX_NEW_TOKENS.items()
            },
            repair=bool(config.option("repair", True)),
        )
        self.last_run = RunStats()

    # ---- what a model engine provides ---------------------------------------------

    def generate(
        self, kind: RegionKind, images: Sequence[Image.Image], conversations: Sequence[Conversation]
    ) -> list[Answer]:
        """One batched generation: an answer per (image, conversation), greedy."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop the model's weights (the engine is unusable after)."""

    def close(self) -> None:
        """Called by the registry when another config replaces this engine."""
        self.release()
        free_memory(self.device)

    def batch_order(self, image: Image.Image) -> float:
        """Sort key within a kind: regions of similar cost share a batch."""
        return float(image.width * image.height)

    # ---- the protocol ---------------------------------------------------------------

    def extract(self, regions: Sequence[RegionInput]) -> list[RegionResult]:
        stats = self.last_run = RunStats(regions=len(regions))
        results: list[RegionResult | None] = [None] * len(regions)
        for kind in ("table", "chart"):
            jobs = [
                _Job(i, kind, rgb(r.image), (Turn("user", PROMPTS[kind]),))
                for i, r in enumerate(regions)
                if r.kind == kind
            ]
            jobs.sort(key=lambda job: self.batch_order(job.image))
            repairs: list[_Job] = []
            for job, answer in self._run(kind, jobs):
                results[job.index] = self._judge(job, answer, repairs)
            stats.repairs += len(repairs)
            for job, answer in self._run(kind, repairs):
                results[job.index] = self._judge(job, answer, [])
        done: list[RegionResult] = []
        for i, result in enumerate(results):
            if result is None:  # a kind no prompt exists for
                result = RegionResult("failed", error=f"cannot read a {regions[i].kind} region")
            stats.failed += result.status == "failed"
            done.append(result)
        return done

    def _judge(self, job: _Job, answer: Answer, repairs: list[_Job]) -> RegionResult:
        """The result for an answer; after queueing a repair turn, a placeholder it replaces."""
        try:
            if answer.truncated:
                limit = self.options.max_new_tokens[job.kind]
                raise InvalidAnswer(f"the answer ran out of tokens (the limit is {limit})")
            parsed = parse_answer(job.kind, answer.text)
        except InvalidAnswer as error:
            if job.first_answer is None and self.options.repair and not answer.truncated:
                conversation = (
                    *job.conversation,
                    Turn("assistant", answer.text),
                    Turn("user", repair_prompt(job.kind, str(error))),
                )
                repairs.append(
                    _Job(job.index, job.kind, job.image, conversation, answer.text, str(error))
                )
                return RegionResult("failed", error=str(error), raw=answer.text)  # replaced
            return self._failed(job, answer, str(error))
        return RegionResult(
            "done",
            table=parsed if isinstance(parsed, Table) else None,
            chart=parsed if isinstance(parsed, ChartData) else None,
            model=self.model_id,
            prompt_version=PROMPT_VERSION,
        )

    def _failed(self, job: _Job, answer: Answer, error: str) -> RegionResult:
        if job.first_answer is None:
            raw, message = answer.text, error
        else:
            raw = job.first_answer + REPAIR_MARKER + answer.text
            message = f"{job.first_error}; after one repair: {error}"
        return RegionResult(
            "failed",
            error=message,
            raw=raw,
            model=self.model_id,
            prompt_version=PROMPT_VERSION,
        )

    def _run(self, kind: RegionKind, jobs: Sequence[_Job]) -> list[tuple[_Job, Answer]]:
        """Answers for all jobs, in batches; out of memory halves the batch and retries."""
        stats = self.last_run

        def out_of_memory(size: int) -> None:
            self.max_batch = max(1, size // 2)
            stats.oom_retries += 1
            log.warning("out of memory on %d regions; now %d at a time", size, self.max_batch)

        def generate(batch: list[_Job]) -> list[Answer]:
            outputs = self.generate(
                kind, [job.image for job in batch], [job.conversation for job in batch]
            )
            if len(outputs) != len(batch):
                raise EngineError(
                    f"{self.name} gave {len(outputs)} answers for {len(batch)} regions"
                )
            return outputs

        answers: list[tuple[_Job, Answer]] = []
        for batch, outputs in shrinking_batches(
            deque(jobs), lambda: self.max_batch, generate, out_of_memory, self.device
        ):
            stats.batches += 1
            stats.generated_tokens += sum(answer.new_tokens for answer in outputs)
            answers.extend(zip(batch, outputs, strict=True))
        return answers
