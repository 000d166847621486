"""enrich: the stages of examples/jobs/enrich.toml, a two-stage enrichment of
product reviews.

Stage "parse" validates and normalises a raw review; stage "score" adds a
lexicon-based sentiment score, a word count and keywords. Each stage gets the
previous stage's value (the first gets the input record) and returns a value
that JSON can hold. Raising marks the record as failed: gilkeeper writes it to
the errors file with the exception's type, message and traceback, and goes on.
"""

import re
from datetime import datetime

REQUIRED = ("id", "user", "text", "rating", "created")
LANGS = {"en", "de", "fr", "es"}

POSITIVE = {"good", "great", "excellent", "love", "loved", "fast", "perfect",
            "nice", "happy", "recommend", "sturdy", "works", "easy", "best"}
NEGATIVE = {"bad", "poor", "broken", "slow", "hate", "hated", "refund",
            "terrible", "worst", "late", "cheap", "flimsy", "returned", "never"}
STOPWORDS = {"the", "a", "an", "and", "or", "it", "is", "was", "to", "of",
             "i", "my", "this", "for", "in", "on", "with", "but", "after",
             "very", "too", "not", "at", "so", "would", "again"}

_WORD = re.compile(r"[a-z']+")


class InvalidReview(ValueError):
    """A review that cannot be processed."""


def parse(record):
    """Stage 1: check the fields and normalise them."""
    if not isinstance(record, dict):
        raise InvalidReview(f"expected an object, got {type(record).__name__}")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise InvalidReview(f"missing field(s): {', '.join(missing)}")
    rating = record["rating"]
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidReview(f"rating must be an integer from 1 to 5, got {rating!r}")
    created = datetime.fromisoformat(record["created"])  # raises on a bad date
    lang = record.get("lang", "en")
    if lang not in LANGS:
        lang = "other"
    return {
        "id": record["id"],
        "user": record["user"].strip().lower(),
        "text": " ".join(record["text"].split()),
        "rating": rating,
        "lang": lang,
        "created": created.isoformat(),
        "weekday": created.strftime("%A"),
    }


def score(review):
    """Stage 2: sentiment in [-1, 1], word count and top keywords."""
    words = _WORD.findall(review["text"].lower())
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    sentiment = 0.0 if pos + neg == 0 else (pos - neg) / (pos + neg)
    counts = {}
    for w in words:
        if w not in STOPWORDS and len(w) > 2:
            counts[w] = counts.get(w, 0) + 1
    keywords = sorted(counts, key=lambda w: (-counts[w], w))[:3]
    # A review whose text disagrees with its stars is worth a human look.
    disagrees = (review["rating"] >= 4 and sentiment < 0) or (review["rating"] <= 2 and sentiment > 0)
    return {
        **review,
        "words": len(words),
        "sentiment": round(sentiment, 3),
        "keywords": keywords,
        "needs_review": disagrees,
    }
