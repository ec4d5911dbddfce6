"""A text corpus from the literature tasks, and real tokenizer algorithms trained on it offline.

No tokenizer can be downloaded here, so tests (and the survival benchmark) train their own with
the ``tokenizers`` library, in a second or two::

    tok = train_tokenizer("byte-bpe", vocab_size=4000)      # GPT-2 / Pythia style
    tok = train_tokenizer("sentencepiece", vocab_size=4000) # Llama / Gemma style (Metaspace)
    tok = train_tokenizer("unigram", vocab_size=4000)       # T5 style (Metaspace + Unigram)

``byte-bpe`` is byte-level BPE (GPT-2's ``ByteLevel`` pre-tokenizer and decoder, every byte in
the alphabet, ``<|endoftext|>`` as BOS/EOS/UNK). ``sentencepiece`` is BPE behind the
``Metaspace`` pre-tokenizer (spaces become ``▁``, prepended to the first word), with
``<unk>``/``<s>``/``</s>``; ``unigram`` is the same with a Unigram model (the trainer stops at
the pieces it finds useful: about 800 on the default corpus). Numbers: by default all kinds
split runs of digits into pairs (``" 1732"`` -> ``" 17"``, ``"32"``), which is how GPT-2's
learned merges treat most years;
``digits="single"`` splits every digit, as Llama's and Gemma's tokenizers do (greater-than then
refuses: no two-digit year is one token). The corpus is every task's prompts and answers
(``tokenizer=None``: the full word lists), the word lists themselves and some filler text, so a
vocabulary of a few thousand makes most task words single tokens and a few hundred does not.
"""

from __future__ import annotations

from . import words as W

__all__ = ["corpus", "train_tokenizer", "KINDS"]

KINDS = ("byte-bpe", "sentencepiece", "unigram")


def corpus(n_per_task: int = 200, seed: int = 0) -> list[str]:
    """Lines of text: each task's clean and corrupted prompts with their answers, every word
    of every list with and without a leading space, two-digit numbers, filler."""
    from . import docstring, gender_bias, greater_than, induction_random, ioi_names

    lines: list[str] = []
    for make in (ioi_names.rows, greater_than.rows, docstring.rows, gender_bias.rows,
                 induction_random.rows):
        for r in make(n_per_task, seed):
            answer = r["answer"] if isinstance(r["answer"], str) else ""
            lines += [r["clean"] + answer, r["corrupted"] + (r.get("wrong_answer") or "")]
    for group in (W.FIRST_NAMES, W.PLACES, W.OBJECTS, W.GT_NOUNS, W.PARAM_NAMES,
                  W.FUNCTION_NAMES, W.DOC_WORDS, W.FEMALE_PROFESSIONS, W.MALE_PROFESSIONS,
                  W.NEUTRAL_NOUNS):
        lines += [" ".join(group), ", ".join(group)] * 3
    lines += [f"in 17{y:02d} and 18{y:02d}, {y:02d} of {y}" for y in range(100)] * 2
    lines += list(W.FILLER) * 10
    return lines


def train_tokenizer(kind: str = "byte-bpe", vocab_size: int = 4000, *, digits: str = "pairs",
                    lines: list[str] | None = None):
    """A ``transformers.PreTrainedTokenizerFast`` of ``kind`` trained on :func:`corpus`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if digits not in ("pairs", "single"):
        raise ValueError(f"digits must be 'pairs' or 'single', got {digits!r}")
    lines = corpus() if lines is None else lines
    if kind == "byte-bpe":
        number = Regex(r" ?\d\d" if digits == "pairs" else r" ?\d")
        special = ["<|endoftext|>"]
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(number, behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False)])
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tk.train_from_iterator(lines, trainer)
        return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=special[0],
                                       eos_token=special[0], unk_token=special[0])
    number = Regex(r"▁?\d\d" if digits == "pairs" else r"▁?\d")
    special = ["<unk>", "<s>", "</s>"]
    if kind == "unigram":
        tk = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special,
                                          unk_token="<unk>", show_progress=False)
    else:
        tk = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                      show_progress=False)
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
        pre_tokenizers.Split(number, behavior="isolated")])
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tk.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
