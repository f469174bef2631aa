"""The paraphrase test: can an embedder tell the same question in other words from another
question in the same words?

tests/corpora/paraphrases.jsonl holds 120 pairs: 63 with the same meaning in different words
and 57 with different meanings sharing most of their words (another number, an antonym,
swapped roles). A pair matches when the cache would serve one for the other: cosine ≥ the
threshold and the anchors (numbers, word order) agree. Precision and recall are printed per
embedder (`pytest -s`); bench/cache.py writes the same table into bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from console.gateway import minilm
from console.gateway.cache import anchors_agree
from console.gateway.embedders import Embedder, GgufEmbedder, LexicalEmbedder
from console.policy import DEFAULT_CACHE_THRESHOLD

CORPUS = Path(__file__).parent / "corpora" / "paraphrases.jsonl"
PAIRS = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Score:
    true_positives: int
    false_positives: int
    positives: int

    @property
    def precision(self) -> float:
        served = self.true_positives + self.false_positives
        return self.true_positives / served if served else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.positives


def similarities(embedder: Embedder) -> list[float]:
    async def embed_all() -> list[float]:
        out = []
        for pair in PAIRS:
            a, b = await embedder.embed(pair["a"]), await embedder.embed(pair["b"])
            out.append(float(np.dot(a, b)))
        return out

    return asyncio.run(embed_all())


def score(sims: list[float], threshold: float) -> Score:
    served = [s >= threshold and anchors_agree(p["a"], p["b"]) for s, p in zip(sims, PAIRS, strict=True)]
    return Score(
        true_positives=sum(1 for hit, p in zip(served, PAIRS, strict=True) if hit and p["same"]),
        false_positives=sum(1 for hit, p in zip(served, PAIRS, strict=True) if hit and not p["same"]),
        positives=sum(1 for p in PAIRS if p["same"]),
    )


@pytest.fixture(scope="module")
def minilm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return minilm.gguf_path(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def sims(minilm_path: Path) -> Iterator[dict[str, list[float]]]:
    yield {
        "lexical": similarities(LexicalEmbedder()),
        "minilm": similarities(GgufEmbedder(minilm_path, name="minilm")),
    }


def test_the_corpus_has_both_kinds_of_pair_and_enough_of_them() -> None:
    same = sum(1 for p in PAIRS if p["same"])
    assert len(PAIRS) >= 100
    assert same >= 40 and len(PAIRS) - same >= 40
    assert len({(p["a"], p["b"]) for p in PAIRS}) == len(PAIRS)


def test_each_embedder_reports_precision_and_recall_at_the_default_threshold(
    sims: dict[str, list[float]],
) -> None:
    rows = {name: score(values, DEFAULT_CACHE_THRESHOLD) for name, values in sims.items()}
    print(f"\nparaphrase test, {len(PAIRS)} pairs, threshold {DEFAULT_CACHE_THRESHOLD}")
    for name, s in rows.items():
        counts = f"{s.true_positives} tp, {s.false_positives} fp"
        print(f"  {name:8} precision {s.precision:.2f}  recall {s.recall:.2f}  ({counts})")
    assert rows["minilm"].false_positives == 0  # the default serves no different-meaning pair
    assert rows["lexical"].false_positives == 0
    assert rows["minilm"].recall > 2 * rows["lexical"].recall  # it does catch paraphrases


def test_at_the_commonly_quoted_threshold_the_default_embedder_would_serve_wrong_answers(
    sims: dict[str, list[float]],
) -> None:
    assert score(sims["minilm"], 0.85).false_positives > 0  # why the default is higher


def test_anchors_turn_away_what_cosine_alone_would_serve(sims: dict[str, list[float]]) -> None:
    swapped = PAIRS.index(
        {"a": "Convert 10 miles to kilometers.", "b": "Convert 10 kilometers to miles.", "same": False}
    )
    other_number = PAIRS.index({"a": "Set an alarm for 6 am.", "b": "Set an alarm for 7 am.", "same": False})
    for index in (swapped, other_number):
        assert sims["minilm"][index] >= DEFAULT_CACHE_THRESHOLD - 0.05
        assert not anchors_agree(PAIRS[index]["a"], PAIRS[index]["b"])


def test_a_gguf_path_embeds_like_the_default(minilm_path: Path) -> None:
    by_path = GgufEmbedder(minilm_path)
    assert by_path.name == f"gguf:{minilm_path}"
    a, b = by_path.embed_now("Where is my package?"), by_path.embed_now("Where is my parcel right now?")
    c = by_path.embed_now("What is the capital of Spain?")
    assert a.shape == (384,)
    assert float(np.linalg.norm(a)) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) > float(a @ c) + 0.3


def test_the_conversion_keeps_the_wordpiece_vocabulary(minilm_path: Path) -> None:
    from llama_cpp import Llama

    with zipfile.ZipFile(minilm.wheel_zip()) as archive:
        vocab = json.loads(archive.read("tokenizer.json"))["model"]["vocab"]
    pieces = ["[CLS]", "hello", "world", ",", "una", "##ffa", "##ble", "!", "[SEP]"]  # greedy longest match
    model = Llama(model_path=str(minilm_path), embedding=True, vocab_only=True, verbose=False)
    assert model.tokenize(b"Hello world, unaffable!") == [vocab[piece] for piece in pieces]
