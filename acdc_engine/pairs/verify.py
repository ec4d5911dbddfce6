"""Checking a pair by running the model: the answer, the token lengths, the margin.

The model runs its plain forward (the Hugging Face module under the loaded model) on one prompt
at a time; the probabilities are the softmax of the last position's logits.

    answer        the user's answer, or the model's top prediction on the clean prompt; it must
                  be one token after the clean prompt
    length        the corrupted prompt has the clean prompt's number of tokens
    margin        |p(answer | clean) - p(answer | corrupted)| >= margin
    wrong answer  the corrupted prompt's top prediction other than the answer (one token after
                  the clean prompt, as the pairs format wants)
"""

from __future__ import annotations

import torch

from .strategies import Reject, Tokens

__all__ = ["Verifier"]

_WRONG_TRIES = 5


class Verifier:
    """The model's last-position probabilities and the checks of :mod:`acdc_engine.pairs`."""

    def __init__(self, model, tokens: Tokens, context: int | None = None):
        self.model, self.tokens, self.context = model, tokens, context
        tok = tokens.tok
        unk = getattr(tok, "unk_token_id", None)
        special = {getattr(tok, f"{t}_token_id", None) for t in ("bos", "eos", "pad")}
        # a word-level vocabulary's <unk> (GPT-2's unk is its <|endoftext|>: a real token)
        self.unk = unk if unk is not None and unk not in special else None

    def probs(self, text: str) -> torch.Tensor:
        """The next-token distribution after ``text`` (float32, on the CPU)."""
        ids = self.tokens.ids(text)
        if self.unk is not None and self.unk in ids:
            raise Reject("unknown-word", f"{text!r} has a word the tokenizer does not know")
        if self.context is not None and len(ids) > self.context:
            raise Reject("too-long", f"{len(ids)} tokens, more than the model's context "
                         f"({self.context})")
        hf = self.model.hf
        device = next(hf.parameters()).device
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([ids], device=device))
        logits = out.logits if hasattr(out, "logits") else out[0]
        return logits[0, -1].float().softmax(-1).cpu()

    def next_token(self, prompt: str, text: str) -> int | None:
        """The id of ``text`` as the one token after ``prompt`` (in context, else alone)."""
        ids = self.tokens.ids(prompt)
        try:
            both = self.tokens.ids(prompt + text)
        except Exception:
            both = []
        if len(both) == len(ids) + 1 and both[:len(ids)] == ids:
            return both[-1]
        return self.tokens.single(text)

    def answer(self, prompt: str, given: str | None, clean: torch.Tensor) -> tuple[str, int]:
        """(answer text, id): the given one, or the model's top prediction."""
        if given is not None:
            a = self.next_token(prompt, given)
            if a is None:
                n = len(self.tokens.ids(given))
                raise Reject("answer", f"the answer {given!r} is {n} tokens after the prompt, "
                             "not one")
            return given, a
        a = int(clean.argmax())
        text = self.tokens.piece(a)
        if self.next_token(prompt, text) != a:
            raise Reject("answer", f"the model's top prediction {text!r} does not come back "
                         "as one token after the prompt")
        return text, a

    def same_length(self, clean: str, candidates: list[str]) -> str:
        """The first candidate with as many tokens as ``clean``."""
        n = len(self.tokens.ids(clean))
        lengths = []
        for c in candidates:
            k = len(self.tokens.ids(c))
            if k == n and c != clean:
                return c
            lengths.append(k)
        raise Reject("length", f"no corrupted prompt has the clean prompt's {n} tokens "
                     f"(tried {len(candidates)}: {sorted(set(lengths))} tokens)")

    def wrong_answer(self, clean: str, corrupted: torch.Tensor, answer: int) -> str:
        """The corrupted prompt's top prediction other than the answer, as text."""
        top = corrupted.topk(_WRONG_TRIES + 1).indices.tolist()
        for i in [t for t in top if t != answer][:_WRONG_TRIES]:
            text = self.tokens.piece(i)
            if self.next_token(clean, text) == i:
                return text
        raise Reject("wrong-answer", "none of the corrupted prompt's top predictions is one "
                     "token after the clean prompt")
