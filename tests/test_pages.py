"""Tokenizer and pages: offline BPE, fixed-size pages, deterministic held-out split, caching."""
import torch

from template.training.pages import build_page_store, split_pages
from template.training.tokenizer import (
    build_tokenizer, load_pretrained_tokenizer, tokenizer_digest, train_bpe_tokenizer,
)
from tests.fixture_text import fixture_text

TEXT = fixture_text()


def test_bpe_tokenizer_is_deterministic_and_round_trips():
    a, b = train_bpe_tokenizer(TEXT, 300), train_bpe_tokenizer(TEXT, 300)
    assert tokenizer_digest(a) == tokenizer_digest(b)
    line = TEXT.splitlines()[0]
    ids = a(line, add_special_tokens=False)["input_ids"]
    assert max(ids) < 300 and a.decode(ids) == line
    assert a.decode(a("Ünïcödé ☃")["input_ids"]) == "Ünïcödé ☃"  # byte-level: no unknowns


def test_tokenizer_is_cached_by_corpus_and_vocab(tmp_path):
    first = build_tokenizer(tmp_path, TEXT, 300)
    dirs = list((tmp_path / "tokenizers").iterdir())
    assert len(dirs) == 1
    assert tokenizer_digest(build_tokenizer(tmp_path, TEXT, 300)) == tokenizer_digest(first)
    build_tokenizer(tmp_path, TEXT, 320)
    assert len(list((tmp_path / "tokenizers").iterdir())) == 2


def test_pretrained_tokenizer_loads_from_a_local_dir(tmp_path):
    tok = train_bpe_tokenizer(TEXT, 300)
    tok.save_pretrained(str(tmp_path / "tok"))
    loaded = load_pretrained_tokenizer(str(tmp_path / "tok"))
    assert loaded("good night")["input_ids"] == tok("good night")["input_ids"]
    assert loaded.pad_token is not None


def test_pages_have_fixed_size_and_a_disjoint_heldout_split(tmp_path):
    store = build_page_store(tmp_path, 300, page_len=32, heldout_fraction=0.1, text=TEXT)
    assert store.tokens.dtype == torch.long and store.tokens.shape[1] == 32
    assert store.num_pages > 100
    train, held = set(store.train_ids), set(store.heldout_ids)
    assert not train & held and train | held == set(range(store.num_pages))
    assert 0.03 < len(held) / store.num_pages < 0.2
    assert torch.equal(store.pages([3, 1])[1], store.tokens[1])


def test_split_is_a_function_of_the_page_id_alone():
    small_train, small_held = split_pages(500, 0.08)
    big_train, big_held = split_pages(1000, 0.08)
    assert big_held[: len(small_held)] == small_held  # growing the corpus never moves pages


def test_page_store_is_cached_and_identical(tmp_path):
    a = build_page_store(tmp_path, 300, page_len=32, text=TEXT)
    files = list((tmp_path / "pages").glob("*.safetensors"))
    assert len(files) == 1
    b = build_page_store(tmp_path, 300, page_len=32, text=TEXT)
    assert a.digest == b.digest and torch.equal(a.tokens, b.tokens)
    assert a.heldout_ids == b.heldout_ids
    c = build_page_store(tmp_path, 300, page_len=16, text=TEXT)
    assert c.digest != a.digest
