"""Each literature generator on each trained tokenizer: seeded, single tokens where used,
aligned pairs, survival notes, and the floor refusal with its reason."""

from __future__ import annotations

import pytest

from acdc_engine.errors import TaskDataError
from acdc_engine.plugins import registry
from acdc_engine.tasks import TaskRows, prepare
from acdc_engine.testing import check_task
from acdc_tasks.literature import GENERATORS, words
from acdc_tasks.literature.common import encode

FULL = ("byte-bpe", "sentencepiece")
# greater-than's YY follows " 17" without a space; the engine tokenizes answers in context
# (acdc_engine.tasks.rows), so SentencePiece's "▁" on a text's first word does not matter
WORKS = [(name, tok) for name in GENERATORS for tok in FULL]
WORKS += [(name, "unigram") for name in ("ioi-names", "docstring", "induction-random-all")]


def one(tok, text):
    ids = encode(tok, text)
    assert len(ids) == 1, f"{text!r} -> {tok.convert_ids_to_tokens(ids)}"
    return ids[0]


def one_after(tok, prompt, text):
    """``text`` is one token right after ``prompt`` (how the engine reads a last-position
    answer: acdc_engine.tasks.rows)."""
    head, ids = encode(tok, prompt), encode(tok, prompt + text)
    assert ids[: len(head)] == head and len(ids) == len(head) + 1, (
        f"{text!r} after {prompt!r} -> {tok.convert_ids_to_tokens(ids[len(head):])}")


@pytest.mark.parametrize("name,tok_name", WORKS)
def test_seeded_aligned_single_tokens(name, tok_name, lit_tokenizers):
    tok, gen = lit_tokenizers[tok_name], GENERATORS[name]
    rows = gen(24, seed=3, tokenizer=tok)
    assert isinstance(rows, TaskRows) and len(rows) == 24
    assert rows == gen(24, seed=3, tokenizer=tok), "not deterministic for a seed"
    assert rows != gen(24, seed=4, tokenizer=tok), "the seed changes nothing"
    assert rows.notes["examples"] == "24 of 24 kept"
    for r in rows:
        c, k = encode(tok, r["clean"]), encode(tok, r["corrupted"])
        assert len(c) == len(k), (r["clean"], r["corrupted"])
        assert r["clean"] != r["corrupted"]
        answers = r["answer"] if isinstance(r["answer"], list) else [r["answer"]]
        wrongs = r["wrong_answer"] if isinstance(r["wrong_answer"], list) else [r["wrong_answer"]]
        for a in [*answers, *wrongs, *r.get("answer_set", []), *r.get("wrong_set", [])]:
            one(tok, a) if "positions" in r else one_after(tok, r["clean"], a)
    # the engine accepts them as they are, and keeps the notes
    data = prepare(registry().tasks[name], tok, rows)
    assert data.meta["notes"] == rows.notes


@pytest.mark.parametrize("tok_name", FULL)
def test_ioi_names_token_indices(tok_name, lit_tokenizers):
    tok = lit_tokenizers[tok_name]
    rows = GENERATORS["ioi-names"](32, seed=1, tokenizer=tok)
    assert {r["order"] for r in rows} == {"ABBA", "BABA"}
    for r in rows:
        ids = encode(tok, r["clean"])
        io, s = one(tok, r["answer"]), one(tok, r["wrong_answer"])
        assert ids[r["io_pos"]] == io and ids[r["s1_pos"]] == ids[r["s2_pos"]] == s
        assert r["end_pos"] == len(ids) - 1 and r["s1_pos"] < r["s2_pos"]
        assert (r["io_pos"] < r["s1_pos"]) == (r["order"] == "ABBA")
        # ABC corruption: neither the IO nor the subject appears in the corrupted prompt
        bad = encode(tok, r["corrupted"])
        assert io not in bad and s not in bad
        names = {bad[r["io_pos"]], bad[r["s1_pos"]], bad[r["s2_pos"]]}
        assert len(names) == 3, "the three corrupted names must differ"


def test_greater_than_sets_and_corruption(lit_tokenizers):
    tok = lit_tokenizers["byte-bpe"]
    for r in GENERATORS["greater-than"](32, seed=2, tokenizer=tok):
        yy = r["year"]
        assert 2 <= yy <= 98 and r["clean"].endswith(" to the year 17")
        assert f"17{yy:02d}" in r["clean"] and "1701" in r["corrupted"]
        assert [int(y) for y in r["answer_set"]] == list(range(yy + 1, 100))
        assert [int(y) for y in r["wrong_set"]] == list(range(0, yy + 1))
        # the answer is the token that follows " 17" in the prompt itself
        ids = encode(tok, r["clean"])
        # The noun lasted from the year [ 17][YY] to the year [ 17]
        assert ids[6] == ids[-1] == one(tok, " 17") and ids[7] == one(tok, f"{yy:02d}")


@pytest.mark.parametrize("tok_name", FULL)
def test_docstring_answer_is_the_next_parameter(tok_name, lit_tokenizers):
    rows = GENERATORS["docstring"](16, seed=0, tokenizer=lit_tokenizers[tok_name])
    for r in rows:
        params = r["clean"].split("(self, ")[1].split("):")[0].split(", ")
        assert r["answer"] == " " + params[2] and r["wrong_answer"] == " " + params[3]
        assert r["clean"].endswith("    :param")
        doc_clean = r["clean"].split('"""')[1]
        doc_bad = r["corrupted"].split('"""')[1]
        assert f":param {params[0]}:" in doc_clean and f":param {params[1]}:" in doc_clean
        assert not any(f":param {p}:" in doc_bad for p in params), "corrupted names leak"
        assert r["clean"].split("\n")[0] == r["corrupted"].split("\n")[0]


def test_gender_bias_answers_follow_the_stereotype(lit_tokenizers):
    rows = GENERATORS["gender-bias"](32, seed=0, tokenizer=lit_tokenizers["sentencepiece"])
    for r in rows:
        female = r["profession"] in words.FEMALE_PROFESSIONS
        assert r["stereotype"] == ("female" if female else "male")
        assert (r["answer"], r["wrong_answer"]) == ((" she", " he") if female else (" he", " she"))
        noun = r["corrupted"].split()[1]
        assert noun in words.NEUTRAL_NOUNS and r["profession"] not in r["corrupted"]


@pytest.mark.parametrize("tok_name", FULL)
def test_induction_all_positions_predict_the_next_token(tok_name, lit_tokenizers):
    tok = lit_tokenizers[tok_name]
    for r in GENERATORS["induction-random-all"](8, seed=0, tokenizer=tok):
        ids = encode(tok, r["clean"])
        L = r["length"]
        assert len(r["positions"]) == len(r["answer"]) == len(r["wrong_answer"]) == L - 1
        assert ids[:1] == encode(tok, tok.bos_token)
        assert ids[1 : L + 1] == ids[L + 1 :] + [one(tok, r["answer"][-1])]
        for p, a in zip(r["positions"][:-1], r["answer"][:-1]):
            assert ids[p + 1] == one(tok, a)  # the token after the read position
        assert r["positions"][-1] == len(ids) - 1


def test_without_a_tokenizer_the_full_lists(lit_tokenizers):
    rows = GENERATORS["ioi-names"](8)
    assert rows.notes["names"] == "100 of 100 single-token"
    assert GENERATORS["greater-than"](8).notes["years"].startswith("100 of 100")
    assert GENERATORS["induction-random"](8)[0]["clean"].startswith("BOS t")


def test_small_vocabulary_survival_notes(lit_tokenizers):
    tok = lit_tokenizers["byte-bpe-small"]
    rows = GENERATORS["ioi-names"](16, seed=0, tokenizer=tok)
    kept = int(rows.notes["names"].split()[0])
    assert 4 <= kept < 60 and rows.notes["names"].endswith("of 100 single-token")
    used = {r["answer"] for r in rows} | {r["wrong_answer"] for r in rows}
    for name in used:
        one(tok, name)
    assert len([n for n in words.FIRST_NAMES if len(encode(tok, " " + n)) == 1]) == kept


@pytest.mark.parametrize("name,tok_name,needle", [
    ("ioi-names", "byte-bpe-tiny", "first names"),
    ("docstring", "byte-bpe-tiny", "parameter names"),
    ("gender-bias", "byte-bpe-tiny", "pronoun"),
    ("gender-bias", "byte-bpe-small", "female-stereotyped professions"),
    ("greater-than", "byte-bpe-tiny", "two-digit years"),
])
def test_floor_refusal_names_words_and_tokenizer(name, tok_name, needle, lit_tokenizers):
    tok = lit_tokenizers[tok_name]
    with pytest.raises(TaskDataError) as err:
        GENERATORS[name](16, seed=0, tokenizer=tok)
    msg = str(err.value)
    assert needle in msg and name in msg and f"({len(tok)} tokens)" in msg
    shown = "[' she', ' he']" if needle == "pronoun" else "e.g. '"
    assert shown in msg, "the refusal shows the words that failed"


def test_greater_than_refuses_digit_by_digit_tokenizers(lit_corpus):
    from acdc_tasks.literature.corpus import train_tokenizer

    tok = train_tokenizer("sentencepiece", 600, digits="single", lines=lit_corpus)
    with pytest.raises(TaskDataError, match=r"century ' 17' is not one token"):
        GENERATORS["greater-than"](8, tokenizer=tok)


def test_induction_refuses_a_vocabulary_without_round_trips():
    from acdc_engine.testing import word_tokenizer

    tok = word_tokenizer(["a", "b", "c"])
    with pytest.raises(TaskDataError, match=r"only 3 of 3 tokens round-trip"):
        GENERATORS["induction-random"](8, tokenizer=tok)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_registered_tasks_pass_the_conformance_kit(name, lit_tokenizers):
    task = registry().tasks[name]
    assert task.model == ("gpt2-ioi-bpe" if name == "ioi-names" else None)
    assert task.description
    check_task(task, lit_tokenizers["byte-bpe"])


@pytest.mark.parametrize("n_names", [4, 5])
def test_ioi_names_floor_is_exact_on_a_word_vocabulary(n_names):
    """A word-level vocabulary with the templates' words and ``n_names`` names: 5 names (IO, S
    and three for the ABC corruption) run, 4 are refused; unknown names (``<unk>``) are not
    counted as single tokens."""
    from acdc_engine.testing import word_tokenizer
    from acdc_tasks.literature import ioi_names

    vocab = {w for t in ioi_names.TEMPLATES for w in t.split() if "[" not in w}
    vocab |= {w + p for w in ("[PLACE]", "[OBJECT]") for p in ".,"}  # "store." etc.
    vocab = sorted({w.replace("[PLACE]", p).replace("[OBJECT]", o)
                    for w in vocab for p in words.PLACES for o in words.OBJECTS})
    vocab += [*words.PLACES, *words.OBJECTS, *words.FIRST_NAMES[:n_names]]
    tok = word_tokenizer(sorted(set(vocab)))
    if n_names < 5:
        with pytest.raises(TaskDataError, match=r"only 4 of 100 first names .*at least 5"):
            ioi_names.rows(16, tokenizer=tok)
        return
    rows = ioi_names.rows(16, tokenizer=tok)
    assert rows.notes["names"] == "5 of 100 single-token"
    assert {r["answer"].strip() for r in rows} <= set(words.FIRST_NAMES[:5])
    prepare("ioi-names", tok, rows)  # no <unk> anywhere


def test_answers_are_tokenized_in_context(lit_tokenizers):
    """After " 17" a SentencePiece-style tokenizer writes the year as "32", while "32" alone
    is "\u258132": the engine takes the token the model would see next (acdc_engine.tasks.rows)."""
    tok = lit_tokenizers["sentencepiece"]
    rows = GENERATORS["greater-than"](8, seed=0, tokenizer=tok)
    data = prepare(registry().tasks["greater-than"], tok, rows)
    for r, answer, ans_set in zip(rows, data.answer, data.answer_set):
        head = encode(tok, r["clean"])
        assert encode(tok, r["clean"] + r["answer"]) == head + [answer]
        alone = encode(tok, r["answer"])
        assert alone != [answer], "this tokenizer changes a text's first word"
        assert ans_set == [encode(tok, r["clean"] + y)[-1] for y in r["answer_set"]]
