"""The nodes of an attribution graph for one prompt, with circuit-tracer's conventions.

* :func:`prompt_ids`: the prompt's token ids with a special token prepended (the first of the
  BOS, pad, end-of-text and other special ids the tokenizer has), unless it starts with one; a
  prompt longer than the model's context is refused. circuit-tracer 0.5.0 skips a special
  token whose id is 0 here (and then prepends none when that is the only one, as for
  gpt2-ioi-bpe): the engine takes it.
* :func:`logit_targets`: the top logits at the last position up to cumulative probability
  ``desired_prob`` (0.95), at most ``max_n`` (10); their probabilities weight the pruning.
* :func:`active_features`: every non-zero feature activation (layer, pos, feature) in that
  order, position 0 left out (zeroed, like its error nodes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AcdcError

__all__ = ["prompt_ids", "context_length", "LogitTargets", "logit_targets", "active_features"]


def context_length(adapter) -> int | None:
    """The model's context length, where its config says it."""
    cfg = getattr(adapter.model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        n = getattr(cfg, key, None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def _bos_id(tokenizer) -> int | None:
    """The first of bos, pad, eos and the special ids that the tokenizer has (id 0 too)."""
    candidates = [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id,
                  *tokenizer.all_special_ids]
    return next((c for c in candidates if c is not None), None)


def prompt_ids(adapter, tokenizer, prompt) -> torch.Tensor:
    """The prompt (text, or token ids) as a 1-D id tensor with a special token first."""
    if isinstance(prompt, str):
        if tokenizer is None:
            raise AcdcError("a text prompt needs the model's tokenizer (pass token ids instead)")
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids[0]
    else:
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(-1)
    if len(ids) == 0:
        raise AcdcError("the prompt is empty")
    if tokenizer is not None and int(ids[0]) not in tokenizer.all_special_ids:
        bos = _bos_id(tokenizer)
        if bos is not None:
            ids = torch.cat([torch.tensor([bos]), ids])
    n_ctx = context_length(adapter)
    if n_ctx is not None and len(ids) > n_ctx:
        raise AcdcError(f"the prompt is {len(ids)} tokens (with the BOS); the model's context "
                        f"is {n_ctx}")
    return ids.to(adapter.device)


@dataclass
class LogitTargets:
    """The logit nodes: vocabulary ids, their tokens (text), probabilities at the last
    position."""

    ids: torch.Tensor
    tokens: list
    probabilities: torch.Tensor


def logit_targets(logits: torch.Tensor, tokenizer, max_n: int = 10,
                  desired_prob: float = 0.95) -> LogitTargets:
    """The top logits of ``logits`` [vocab] up to cumulative probability ``desired_prob``, at
    most ``max_n`` (circuit-tracer's salient targets)."""
    probs = torch.softmax(logits.float(), dim=-1)
    top_p, top_i = torch.topk(probs, min(max_n, len(probs)))
    cutoff = int(torch.searchsorted(torch.cumsum(top_p, 0), desired_prob)) + 1
    ids = top_i[:cutoff]
    tokens = [tokenizer.decode([i]) if tokenizer is not None else str(i) for i in ids.tolist()]
    return LogitTargets(ids.cpu(), tokens, top_p[:cutoff].cpu())


def active_features(acts: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices [k, 3] (layer, pos, feature) lexicographic, values [k]) of the non-zero
    activations ``acts`` (per layer [p, n]), position 0 left out."""
    stacked = torch.stack([a.detach() for a in acts])  # [L, p, n]
    stacked[:, 0] = 0
    idx = stacked.nonzero()
    return idx.cpu(), stacked[idx[:, 0], idx[:, 1], idx[:, 2]].cpu()
