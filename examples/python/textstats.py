"""A small text scorer for the examples."""


def score(text):
    vowels = sum(1 for c in text.lower() if c in "aeiou")
    return round(vowels / max(1, len(text)), 3)


def normalise(record):
    text = " ".join(str(record.get("text", "")).split())
    return {"id": record.get("id"), "text": text.lower()}
