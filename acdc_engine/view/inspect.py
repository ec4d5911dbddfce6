"""What the views show about one prompt: attention patterns (QK), what a head writes (OV), the
logit lens and token attribution.

The numbers come from :mod:`acdc_engine.evidence.descriptive` (attention patterns, logit lens,
direct logit attribution, token attribution) and, for a head's write to the logits, from the
session's own interventions: the head's direct effect on every token's logit is the change in
the last-position logits when the edge ``a{l}.{h}->logits`` is ablated with zero on top of the
current stack (exact, through the one patched forward, not a first-order estimate).

Every method returns plain JSON-able dicts; errors a user can cause are :class:`AcdcError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import AcdcError
from ..interventions import Intervention

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Inspector"]


class Inspector:
    """The descriptive views of a :class:`~acdc_engine.view.session.Session` (``session.inspect``).

    Results that do not depend on the interventions are cached per prompt."""

    def __init__(self, session: Session):
        self.s = session
        self._patterns: dict[int, torch.Tensor] = {}
        self._tokens: dict[str, torch.Tensor] = {}
        self._dla: torch.Tensor | None = None

    # ----- prompts ----------------------------------------------------------------------------
    def ids(self, example: int) -> torch.Tensor:
        """Token ids of example ``example``'s clean prompt: ``[1, pos]``."""
        self.s.prompt(example)  # checks the number
        return torch.tensor([self.s.data.clean[example]])

    def encode(self, text: str) -> list[int]:
        """Token ids of a free-text prompt; a prompt the tokenizer cannot read is an error."""
        tok = self.s.model.tokenizer
        if tok is None:
            raise AcdcError("this model has no tokenizer, so free-text prompts cannot be read")
        text = text.strip()
        if not text:
            raise AcdcError("the prompt is empty")
        ids = tok(text, add_special_tokens=False)["input_ids"]
        unk = getattr(tok, "unk_token_id", None)
        bad = [w for w, i in zip(text.split(), ids) if unk is not None and i == unk]
        if not ids or (unk is not None and unk in ids):
            raise AcdcError(f"the prompt does not tokenize for {self.s.model.id}: unknown "
                            f"word(s) {bad or [text]!r}")
        return ids

    # ----- heads -----------------------------------------------------------------------------
    def patterns(self, example: int) -> torch.Tensor:
        """Attention weights of every head on example ``example``:
        ``[n_layers, n_heads, q_pos, k_pos]``."""
        if example not in self._patterns:
            from ..evidence.descriptive import attention_patterns

            pats = attention_patterns(self.s.model, self.ids(example))  # [L, H, 1, q, k]
            self._patterns[example] = pats[:, :, 0].cpu()
            if len(self._patterns) > 16:
                self._patterns.pop(next(iter(self._patterns)))
        return self._patterns[example]

    def _node(self, node: str):
        g = self.s.graph
        try:
            n = g.node(node)
        except KeyError as e:
            raise AcdcError(e.args[0]) from None
        return n

    def qk(self, node: str, example: int = 0) -> dict:
        """The attention pattern of head ``node`` (``a1.2``) or of every head of a layer
        (``a1.*`` or ``L1``) on ``example``, with the tokens along both axes."""
        g = self.s.graph
        layer, heads = self._layer_heads(node)
        pats = self.patterns(example)[layer]  # [H, q, k]
        return {"mode": "qk", "node": node, "layer": layer, "example": example,
                "tokens": self.s.tokens(self.s.data.clean[example]),
                "heads": [{"name": f"a{layer}.{h}", "pattern": pats[h].tolist()} for h in heads],
                "n_heads": g.n_heads}

    def _layer_heads(self, node: str) -> tuple[int, list[int]]:
        g = self.s.graph
        node = node.strip()
        if node.endswith(".*") or node.upper().startswith("L"):
            digits = node[1:-2] if node.endswith(".*") else node[1:]
            if not digits.isdigit() or not 0 <= int(digits) < g.n_layers:
                raise AcdcError(f"no layer {node!r} (layers 0 to {g.n_layers - 1})")
            return int(digits), list(range(g.n_heads))
        n = self._node(node)
        if n.head is None:
            raise AcdcError(f"{node} is not an attention head (heads look like 'a1.2')")
        return n.layer, [n.head]

    def ov(self, node: str, example: int | None = None, k: int = 8) -> dict:
        """What head (or MLP) ``node`` writes to the logits under the current interventions: its
        direct effect on the answer's and the wrong answer's logits (mean over the task's
        examples, or on one example) and the tokens it promotes and suppresses most."""
        s = self.s
        n = self._node(node)
        if n.kind.value not in ("attn", "mlp"):
            raise AcdcError(f"{node} is not a head or an MLP")
        # [n, vocab] each: now, and with the node's edge to the logits ablated on top
        base, without = s.logits_with(Intervention("ablate", f"{node}->logits", "zero"))
        effect = base - without  # [n, vocab]: the node's direct effect on every logit
        ex = torch.arange(len(effect))
        pick = ex if example is None else (s.row_order == example).nonzero()[:, 0]
        if example is not None and len(pick) == 0:
            s.prompt(example)  # raises the clear error
        ans = effect[ex, s.answer_ids][pick].mean()
        wrong = None if s.wrong_ids is None else float(effect[ex, s.wrong_ids][pick].mean())
        mean = effect[pick].mean(0)  # [vocab]
        up, down = mean.topk(k), (-mean).topk(k)
        return {
            "mode": "ov", "node": node, "example": example,
            "answer_effect": float(ans), "wrong_effect": wrong,
            "diff_effect": None if wrong is None else float(ans) - wrong,
            "promotes": [[s.tokens([i])[0], float(v)] for v, i in zip(up.values, up.indices)],
            "suppresses": [[s.tokens([i])[0], -float(v)]
                           for v, i in zip(down.values, down.indices)],
        }

    def dla(self) -> dict[str, float]:
        """Direct logit attribution of every writer (mean over examples), by node name."""
        if self._dla is None:
            from ..evidence.descriptive import direct_logit_attribution

            self._dla = direct_logit_attribution(self.s.problem)
        return {n.name: float(v) for n, v in zip(self.s.graph.writers, self._dla)}

    # ----- logit lens and tokens -----------------------------------------------------------
    def lens(self, example: int = 0, position: int = -1, text: str | None = None) -> dict:
        """The logit lens of example ``example`` (or a free-text ``text``) at ``position``:
        per layer (embeddings first) the answer's logit difference, rank and top tokens. A free
        prompt's "answer" and "wrong answer" are the full model's top two predictions. The lens
        reads the unintervened model (a descriptive view)."""
        from ..evidence.descriptive import logit_lens

        s = self.s
        if text:  # a free prompt has no answer: read the model's own top two predictions
            from ..patching import LAST, NO_PATCH, run

            ids = torch.tensor([self.encode(text)])
            with torch.no_grad():
                logits = run(s.model.adapter, ids.to(s.model.device), NO_PATCH, LAST)
            answer, wrong = logits[0, -1].topk(2).indices.tolist()
            row = {"answer": s.tokens([answer])[0], "wrong": s.tokens([wrong])[0]}
        else:
            ids, row = self.ids(example), s.prompt(example)
            answer = s.data.answer[example]
            wrong = None if s.data.wrong is None else s.data.wrong[example]
        pos = ids.shape[1]
        if not -pos <= position < pos:
            raise AcdcError(f"no position {position}: the prompt has {pos} tokens")
        lens = logit_lens(s.model, ids, answer, wrong, position=position)
        layers = ["embed"] + [f"L{i}" for i in range(lens.n_layers)]
        return {
            "example": example, "position": position % pos, "tokens": s.tokens(ids[0]),
            "answer": row["answer"], "wrong": row["wrong"], "layers": layers,
            "logit_diff": lens.logit_diff[:, 0].tolist(),
            "answer_rank": lens.answer_rank[:, 0].tolist(),
            "top": [[[s.tokens([t])[0], p] for t, p in layer[0]] for layer in lens.top_tokens],
        }

    def attribution(self, example: int = 0, method: str = "input_x_grad") -> dict:
        """Per-token attribution of the metric on example ``example``'s prompt (``input_x_grad``
        or ``integrated_gradients``; computed for every example once, then cached)."""
        from ..evidence.descriptive import TOKEN_METHODS, token_attribution

        if method not in TOKEN_METHODS:
            raise AcdcError(f"unknown token attribution {method!r} "
                            f"(use {', '.join(TOKEN_METHODS)})")
        s = self.s
        s.prompt(example)
        if method not in self._tokens:
            self._tokens[method] = token_attribution(s.problem, method)  # [n, pos], batch order
        where = int((s.row_order == example).nonzero()[0, 0])
        row = self._tokens[method][where]
        tokens = s.tokens(s.data.clean[example])
        return {"example": example, "method": method, "tokens": tokens,
                "values": row[: len(tokens)].tolist()}
