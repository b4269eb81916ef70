"""Florence-2 OCR-with-regions and table/chart detection engines.

Pages are cut into overlapping tiles (see ``tiling``), tiles from all pages
of a call share batched ``generate`` calls, and a tile whose answer ran out
of tokens is split and read again instead of silently losing its last lines.
A CUDA out-of-memory error halves the batch and retries.

torch is imported lazily (inside methods) so that importing this module, as
the registry does to find the factories, stays cheap.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from docintel.engines.base import EngineConfig, EngineError, rgb
from docintel.engines.florence2 import loading
from docintel.engines.florence2.confidence import (
    ChosenTokenLogprobs,
    TokenInfo,
    line_confidences,
)
from docintel.engines.florence2.parsing import (
    OCR_TASK,
    OD_TASK,
    OVD_TASK,
    parse_boxes,
    parse_ocr,
)
from docintel.engines.florence2.tiling import (
    Tile,
    TileLine,
    iou,
    make_line,
    merge_tile_lines,
    split_tile,
    tile_grid,
)
from docintel.engines.torch_runtime import shrinking_batches
from docintel.geometry import Region, RegionKind, TextLine

log = logging.getLogger(__name__)

ENGINE_NAME = "florence2"

# Page pixels per tile side. At 200 dpi, 1024 px squashed to 768 keeps 10 pt
# body text around 20 px high, which Florence-2 reads well, and a tile of
# dense text still fits the decoder's 1024 positions most of the time.
DEFAULT_TILE_SIZE = 1024
DEFAULT_OVERLAP = 128  # several text lines: every line is whole in some tile
DEFAULT_MIN_TILE_SIZE = 256
DEFAULT_DETECT_PROMPTS = ("table", "chart")

_CHART_WORDS = ("chart", "graph", "plot", "diagram")


@dataclass(frozen=True, slots=True)
class Generation:
    """One decoded answer: raw text (special tokens kept), tokens generated, cut short or not."""

    text: str
    new_tokens: int
    truncated: bool
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()  # of each chosen token; empty under beam search


@dataclass(slots=True)
class RunStats:
    """What the last ``recognize``/``detect`` call did; for logs and the benchmark."""

    tiles: int = 0
    batches: int = 0
    splits: int = 0
    truncated_kept: int = 0
    oom_retries: int = 0
    generated_tokens: int = 0


@dataclass(frozen=True, slots=True)
class _Job:
    index: int  # which input image
    tile: Tile
    prompt: str


def _crop(image: Image.Image, tile: Tile) -> Image.Image:
    if tile.box == (0, 0, image.width, image.height):
        return image
    return image.crop(tile.box)


class _Florence2Engine:
    """Shared model handle, generation and OOM-aware batching for both engines."""

    name = ENGINE_NAME

    def __init__(self, config: EngineConfig) -> None:
        # Options are checked before the model loads: a bad option must not
        # leave a hold on the shared weights behind.
        self.config = config
        self.batch_size = max(1, int(config.batch_size))
        # Lowered for good after an out-of-memory error: the GPU will not grow,
        # and failing every call at the configured size wastes an encoder pass.
        self.max_batch = self.batch_size
        beams = config.int_option("num_beams", 1, 1)
        wanted_tokens = config.int_option("max_new_tokens", 1 << 30, 1)
        self._loaded: loading.LoadedModel | None = loading.acquire(config)
        # Release the shared model even if nobody calls close().
        self._release = weakref.finalize(self, loading.release, self._loaded.key)
        # Greedy by default. Beam search (3 in the official examples) reorders the
        # whole KV cache every step: on an H200, Florence-2-large at 24 tiles per
        # batch ran 61 ms per decode step with 3 beams against 8.3 ms greedy.
        self.num_beams = beams
        # Generating past the decoder's position table raises IndexError.
        self.max_new_tokens = min(wanted_tokens, self.decoder_positions)
        # Extra keyword arguments for model.generate (tests script the decoder here).
        self.generate_overrides: dict[str, Any] = {}
        self.last_run = RunStats()

    @property
    def loaded(self) -> loading.LoadedModel:
        if self._loaded is None:
            raise EngineError("Florence-2 engine is closed")
        return self._loaded

    @functools.cached_property
    def token_info(self) -> TokenInfo:
        """The tokenizer's location and sequence ids, looked up once per engine."""
        return TokenInfo.of(self.loaded.processor.tokenizer)

    @property
    def decoder_positions(self) -> int:
        text_config = getattr(self.loaded.model.config, "text_config", None)
        return int(getattr(text_config, "max_position_embeddings", 1024))

    def close(self) -> None:
        self._loaded = None
        self._release()

    def _generate(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[Generation]:
        """One batched generate call; the single place a test can make 'the GPU' fail."""
        import torch

        loaded = self.loaded
        processor, model = loaded.processor, loaded.model
        # Right padding whatever the checkpoint's tokenizer config says: BART's
        # encoder positions are absolute, so left padding shifts a short prompt.
        inputs = processor(
            text=list(prompts),
            images=list(images),
            return_tensors="pt",
            padding="longest",
            padding_side="right",
        )
        inputs = inputs.to(loaded.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": False,
        }
        kwargs.update(self.generate_overrides)
        recorder = ChosenTokenLogprobs() if kwargs["num_beams"] == 1 else None
        if recorder is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(
                [*kwargs.get("logits_processor", []), recorder]
            )
        with torch.inference_mode():
            sequences = model.generate(**inputs, **kwargs).cpu()
        texts = processor.batch_decode(sequences, skip_special_tokens=False)
        logprobs = recorder.per_row() if recorder is not None else []
        eos = processor.tokenizer.eos_token_id
        pad = processor.tokenizer.pad_token_id
        budget = int(kwargs["max_new_tokens"])
        results = []
        for index, (row, text) in enumerate(zip(sequences.tolist(), texts, strict=True)):
            generated = row[1:]  # row[0] is the decoder start token (which is </s>)
            if eos in generated:
                count = generated.index(eos) + 1
                # A checkpoint's forced_eos_token_id puts </s> on the last allowed
                # step, so a used-up budget counts as truncated even with </s>.
                truncated = count >= budget
            else:
                count = sum(1 for token in generated if token != pad)
                truncated = True
            results.append(
                Generation(
                    text=text,
                    new_tokens=count,
                    truncated=truncated,
                    token_ids=tuple(generated[:count]),
                    logprobs=tuple(logprobs[index][:count]) if logprobs else (),
                )
            )
        return results

    def _run(
        self,
        images: Sequence[Image.Image],
        jobs: Iterable[_Job],
        handle: Callable[[_Job, Generation], list[_Job]],
    ) -> None:
        """Generate for every job in batches; ``handle`` may queue follow-up jobs."""
        stats = self.last_run = RunStats()

        def out_of_memory(size: int) -> None:
            self.max_batch = max(1, size // 2)
            stats.oom_retries += 1
            log.warning("out of memory on %d tiles; now %d at a time", size, self.max_batch)

        def generate(batch: list[_Job]) -> list[Generation]:
            return self._generate(
                [_crop(images[job.index], job.tile) for job in batch],
                [job.prompt for job in batch],
            )

        pending = deque(jobs)
        for batch, generations in shrinking_batches(
            pending, lambda: self.max_batch, generate, out_of_memory, self.loaded.device
        ):
            stats.batches += 1
            stats.tiles += len(batch)
            for job, generation in zip(batch, generations, strict=True):
                stats.generated_tokens += generation.new_tokens
                pending.extend(handle(job, generation))


class Florence2Ocr(_Florence2Engine):
    """``<OCR_WITH_REGION>`` over overlapping tiles; lines in page pixels, reading order."""

    def __init__(self, config: EngineConfig) -> None:
        self.tile_size = config.int_option("tile_size", DEFAULT_TILE_SIZE, 32)
        default_overlap = min(DEFAULT_OVERLAP, self.tile_size // 4)
        self.overlap = config.int_option("overlap", default_overlap, 0)
        self.min_tile_size = config.int_option("min_tile_size", DEFAULT_MIN_TILE_SIZE, 16)
        if self.overlap >= self.tile_size // 2:
            raise EngineError("option 'overlap' must be less than half of 'tile_size'")
        super().__init__(config)

    def recognize(self, images: Sequence[Image.Image]) -> list[list[TextLine]]:
        pages = [rgb(image) for image in images]
        found: list[list[TileLine]] = [[] for _ in pages]
        processor = self.loaded.processor
        tokens = self.token_info

        def handle(job: _Job, generation: Generation) -> list[_Job]:
            tile = job.tile
            if generation.truncated:
                subtiles = split_tile(tile, self.min_tile_size, self.overlap)
                if subtiles:
                    self.last_run.splits += 1
                    return [_Job(job.index, sub, job.prompt) for sub in subtiles]
                self.last_run.truncated_kept += 1
            size = (tile.width, tile.height)
            page = pages[job.index]
            lines = parse_ocr(processor, generation.text, size)
            scores = line_confidences(lines, generation.token_ids, generation.logprobs, tokens)
            for line, confidence in zip(lines, scores, strict=True):
                polygon = tile.to_page(line.quad, size)
                found[job.index].append(make_line(line.text, polygon, tile, page.size, confidence))
            return []

        jobs = [
            _Job(index, tile, OCR_TASK)
            for index, page in enumerate(pages)
            for tile in tile_grid(page.width, page.height, self.tile_size, self.overlap)
        ]
        self._run(pages, jobs, handle)
        if self.last_run.truncated_kept:
            log.warning(
                "%d tiles ran out of tokens even at the minimum tile size %d; "
                "kept their partial text",
                self.last_run.truncated_kept,
                self.min_tile_size,
            )
        return [
            [TextLine(ln.text, ln.polygon, ln.confidence) for ln in merge_tile_lines(lines)]
            for lines in found
        ]


def region_kind(label: str) -> RegionKind | None:
    """Map a Florence-2 label to a region kind; anything else is not ours to extract."""
    text = label.lower()
    if "table" in text:
        return "table"
    if any(word in text for word in _CHART_WORDS):
        return "chart"
    return None


def detection_prompts(config: EngineConfig) -> list[str]:
    """Prompts for option ``detect_task`` (<OD>, <OPEN_VOCABULARY_DETECTION> or both)."""
    task = str(config.option("detect_task", OVD_TASK)).strip()
    aliases = {"od": OD_TASK, "ovd": OVD_TASK, "open_vocabulary_detection": OVD_TASK}
    task = aliases.get(task.lower().strip("<>"), task)
    words = config.option("detect_prompts", DEFAULT_DETECT_PROMPTS)
    if isinstance(words, str):
        words = [w for w in (part.strip() for part in words.split(",")) if w]
    ovd = [f"{OVD_TASK}{word}" for word in words]
    if task == OD_TASK:
        return [OD_TASK]
    if task == OVD_TASK:
        return ovd
    if task.lower() == "both":
        return [OD_TASK, *ovd]
    raise EngineError(
        f"unsupported detect_task {task!r}; use <OD>, <OPEN_VOCABULARY_DETECTION> or both"
    )


def _dedupe_regions(regions: list[Region]) -> list[Region]:
    # Several prompts (or tasks) find the same table: keep the largest box.
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: -(r.bbox[2] - r.bbox[0]) * (r.bbox[3] - r.bbox[1])):
        if not any(k.kind == region.kind and iou(k.bbox, region.bbox) >= 0.7 for k in kept):
            kept.append(region)
    return sorted(kept, key=lambda r: (r.bbox[1], r.bbox[0]))


class Florence2RegionDetector(_Florence2Engine):
    """Table and chart regions from whole-page detection prompts (no tiling: they are big)."""

    min_side = 4.0  # pixels; anything thinner is a parsing artefact

    def __init__(self, config: EngineConfig) -> None:
        self.prompts = detection_prompts(config)
        super().__init__(config)

    def detect(self, images: Sequence[Image.Image]) -> list[list[Region]]:
        pages = [rgb(image) for image in images]
        found: list[list[Region]] = [[] for _ in pages]
        processor = self.loaded.processor

        def handle(job: _Job, generation: Generation) -> list[_Job]:
            task = OD_TASK if job.prompt == OD_TASK else OVD_TASK
            size = (job.tile.width, job.tile.height)
            for box in parse_boxes(processor, generation.text, task, size):
                kind = region_kind(box.label or job.prompt.removeprefix(OVD_TASK))
                x0, y0, x1, y1 = box.bbox
                if kind and x1 - x0 >= self.min_side and y1 - y0 >= self.min_side:
                    found[job.index].append(Region(kind, box.bbox, 1.0, box.label))
            return []

        jobs = [
            _Job(index, Tile(0, 0, page.width, page.height), prompt)
            for index, page in enumerate(pages)
            for prompt in self.prompts
        ]
        self._run(pages, jobs, handle)
        return [_dedupe_regions(regions) for regions in found]


def build_ocr(config: EngineConfig) -> Florence2Ocr:
    return Florence2Ocr(config)


def build_detector(config: EngineConfig) -> Florence2RegionDetector:
    return Florence2RegionDetector(config)
