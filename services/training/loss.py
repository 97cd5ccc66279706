"""CLIP4Clip's contrastive loss: symmetric cross-entropy over the text x video similarity matrix.

Row ``i`` of ``text_emb`` and row ``i`` of ``video_emb`` are a matching pair; every other video in
the batch is a negative for text ``i`` and every other text a negative for video ``i``.

Several captions of one clip: the trainer puts each clip in a batch at most once, with one of
its captions drawn per epoch, so the diagonal is the only positive (CLIP4Clip does the same).
A caller that cannot promise this passes ``clip_ids``: an off-diagonal pair of the same clip is
then dropped from both softmax denominators, so a duplicate is neither a false negative nor a
second positive.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: CLIP's ceiling on the learnable temperature: the logit scale never exceeds 100.
LOGIT_SCALE_MAX = math.log(100.0)


def clamp_logit_scale_(logit_scale: torch.nn.Parameter) -> None:
    """Keep the raw parameter in [0, log 100] after an optimiser step, as CLIP and open_clip do.

    The forward pass already clamps, but a parameter left above the ceiling gets no gradient and
    would need many steps to come back.
    """
    with torch.no_grad():
        logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)


def contrastive_loss(
    text_emb: torch.Tensor,
    video_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    clip_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of the text->video and video->text cross-entropies, computed in float32.

    ``text_emb`` and ``video_emb`` are unit rows ``[n, d]``; ``logit_scale`` is the model's raw
    (log) temperature, clamped to ``LOGIT_SCALE_MAX`` before ``exp``. ``clip_ids [n]``, when
    given, marks rows of the same clip (see the module docstring).
    """
    if text_emb.shape != video_emb.shape or text_emb.ndim != 2:
        raise ValueError(f"need paired [n, d] embeddings, got {tuple(text_emb.shape)} and {tuple(video_emb.shape)}")
    # Under autocast the matmul would run in bf16/fp16; the logits of a 512-wide product of unit
    # vectors times 100 need float32.
    with torch.autocast(device_type=text_emb.device.type, enabled=False):
        scale = logit_scale.float().clamp(max=LOGIT_SCALE_MAX).exp()
        logits = scale * text_emb.float() @ video_emb.float().T
        if clip_ids is not None:
            same = clip_ids.view(-1, 1) == clip_ids.view(1, -1)
            same.fill_diagonal_(False)
            logits = logits.masked_fill(same, float("-inf"))
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def reversal_loss(text_emb: torch.Tensor, video_emb: torch.Tensor, forward: int, margin: float) -> torch.Tensor:
    """Time-reversal contrast: a hinge on how alike a clip and its reversed copy embed, and its
    caption and the caption with the motion reversed.

    Rows ``[0, forward)`` are clips (captions) and rows ``[forward, 2 * forward)`` their reversed
    copies, in the same order. A pair costs nothing once its cosine is at most ``margin``;
    above, it costs how much closer the two unit vectors are than the chord ``sqrt(2 - 2 margin)``
    that cosine puts between them. The contrastive loss alone starts at a saddle here: when
    neither tower separates the twins, neither gets a gradient to start (the push on one tower
    is the other tower's difference). The chord, unlike the cosine, has a gradient of full size
    however close the twins are, so each tower gets its own push from the first step.
    """
    if text_emb.shape != video_emb.shape or text_emb.shape[0] < 2 * forward:
        raise ValueError(f"need {2 * forward} paired rows, got {tuple(text_emb.shape)} and {tuple(video_emb.shape)}")
    chord = math.sqrt(2.0 - 2.0 * margin)
    with torch.autocast(device_type=text_emb.device.type, enabled=False):
        costs = []
        for emb in (video_emb, text_emb):
            gap = emb[:forward].float() - emb[forward : 2 * forward].float()
            # The epsilon keeps the gradient finite (zero) for twins that are exactly equal: a still shot.
            distance = (gap.square().sum(dim=-1) + 1e-12).sqrt()
            costs.append(F.relu(chord - distance).mean())
        return (costs[0] + costs[1]) / 2
