"""Line confidences from the probabilities of the tokens Florence-2 chose.

Florence-2 gives no score per line, so we record one: under greedy decoding
(the default) a logits processor placed last notes, at every step, the
log-probability of the token that will be chosen (the best one after every
other processor ran). A line's confidence is the geometric mean probability of
its text tokens: 1.0 when every token was certain, lower as the model
hesitated. Beam search reorders its rows between steps, so there a step's
best score is not the chosen token's; lines then keep confidence 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from docintel.engines.florence2.parsing import ParsedLine, clean_label

LOCATIONS_PER_LINE = 8


class ChosenTokenLogprobs:
    """A logits processor that records the best log-probability of each row per step.

    Appended after generate's own processors, so it sees the final scores; it
    returns them unchanged. Values stay on the device until ``per_row``.
    """

    def __init__(self) -> None:
        self._steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self._steps.append(scores.float().log_softmax(dim=-1).amax(dim=-1))
        return scores

    def per_row(self) -> list[list[float]]:
        """``[row][step]`` log-probabilities, one per generated token of each row."""
        if not self._steps:
            return []
        import torch

        return torch.stack(self._steps, dim=1).cpu().tolist()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What segmenting a generation needs to know about the tokenizer."""

    location_ids: frozenset[int]
    sequence_ids: frozenset[int]  # <s>, </s>, <pad>: no part of any line
    decode: Callable[[Sequence[int]], str]

    @classmethod
    def of(cls, tokenizer: Any) -> TokenInfo:
        locations = tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(1000)])
        unknown = tokenizer.unk_token_id
        sequence = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
        return cls(
            location_ids=frozenset(i for i in locations if i is not None and i != unknown),
            sequence_ids=frozenset(i for i in sequence if i is not None),
            decode=lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False),
        )


def _geometric_mean(logprobs: Sequence[float]) -> float:
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else 1.0


def segment_confidences(
    token_ids: Sequence[int], logprobs: Sequence[float], info: TokenInfo
) -> list[tuple[str, float]]:
    """(text, confidence) of each complete "text + 8 locations" segment, in order.

    Segments the way the fallback parser reads the text: text tokens, then
    exactly eight location tokens; text after an incomplete box starts over.
    """
    segments: list[tuple[str, float]] = []
    text_ids: list[int] = []
    text_logprobs: list[float] = []
    locations = 0
    for token, logprob in zip(token_ids, logprobs, strict=False):
        if token in info.sequence_ids:
            continue
        if token in info.location_ids:
            locations += 1
            if locations == LOCATIONS_PER_LINE:
                label = clean_label(info.decode(text_ids))
                if label:
                    segments.append((label, _geometric_mean(text_logprobs)))
                text_ids, text_logprobs, locations = [], [], 0
            continue
        if locations:  # text after an incomplete box: that box is lost
            text_ids, text_logprobs, locations = [], [], 0
        text_ids.append(token)
        text_logprobs.append(logprob)
    return segments


def line_confidences(
    lines: Sequence[ParsedLine],
    token_ids: Sequence[int],
    logprobs: Sequence[float],
    info: TokenInfo,
) -> list[float]:
    """A confidence for each parsed line, matched to the segments by text, in order.

    The processor's parser may drop or reshape a line; a line with no segment
    of the same text gets the generation's overall text confidence.
    """
    if not logprobs:
        return [1.0] * len(lines)
    segments = segment_confidences(token_ids, logprobs, info)
    text_logprobs = [
        lp
        for token, lp in zip(token_ids, logprobs, strict=False)
        if token not in info.location_ids and token not in info.sequence_ids
    ]
    overall = _geometric_mean(text_logprobs)
    confidences = []
    start = 0
    for line in lines:
        for index in range(start, len(segments)):
            if segments[index][0] == line.text:
                confidences.append(segments[index][1])
                start = index + 1
                break
        else:
            confidences.append(overall)
    return confidences
