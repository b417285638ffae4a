"""Minimal pairs: dev questions with one word changed, with and without changing the meaning, scored
by dupfinder (its verdict and its cosine) and all-MiniLM-L6-v2 side by side.

    python benchmarks/minimal_pairs.py --build        # (re)writes benchmarks/data/minimal_pairs.csv from dev.csv
    python benchmarks/minimal_pairs.py [--model DIR] [--no-minilm]

The set is built by construction from two hand-written word lists: SAME (a synonym in any context
the word takes in a question: "movie" -> "film") labels the pair a duplicate; OTHER (a sibling
concept or an opposite: "buy" -> "sell", "India" -> "China") labels it not. Each source question
gives one pair per list where both apply (a triplet: the paraphrase must score above the change),
else one pair. Words of the named example pairs are not used. Reported: pair accuracy at each
system's own threshold (MiniLM's is its best dev threshold, 0.757, an upper bound), and the share of
triplets ordered right. Never used for training.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
DATA = HERE / "data" / "minimal_pairs.csv"
DEV = HERE.parent.parent / "shared" / "data" / "quora" / "dev.csv"
MINILM_THRESHOLD = 0.757  # all-MiniLM-L6-v2's best dev threshold (docs/history.md)

SAME = {
    "movie": "film", "movies": "films", "film": "movie", "buy": "purchase", "purchase": "buy", "begin": "start",
    "large": "big", "biggest": "largest", "largest": "biggest", "quickly": "fast", "rapidly": "quickly",
    "pictures": "photos", "photos": "pictures", "photo": "picture", "choose": "select", "select": "choose",
    "earn": "make", "difficult": "hard", "cheap": "inexpensive", "fix": "repair", "repair": "fix", "kids": "children",
    "children": "kids", "ways": "methods", "methods": "ways", "mistakes": "errors", "scared": "afraid",
    "intelligent": "smart", "rich": "wealthy", "wealthy": "rich", "sick": "ill",
    "quit": "stop", "useful": "helpful", "helpful": "useful", "fastest": "quickest", "easiest": "simplest",
    "mom": "mother", "dad": "father", "tips": "advice", "famous": "renowned", "nowadays": "today",
    "beginners": "novices",
    "automobile": "car", "car": "automobile", "cars": "automobiles",
    "gift": "present", "website": "site", "websites": "sites", "talk": "speak", 
    
    "enormous": "huge", "huge": "enormous", "tiny": "very small", 
    "correct": "right", "happy": "glad", "angry": "mad", "stupid": "dumb", "weird": "strange", "strange": "weird",
}
OTHER = {
    "buy": "sell", "sell": "buy", "best": "worst", "worst": "best", "before": "after", "after": "before",
    "increase": "decrease", "decrease": "increase", "men": "women", "women": "men", "boys": "girls", "girls": "boys",
    "boy": "girl", "girl": "boy", "india": "china", "china": "india", "usa": "canada", "pakistan": "bangladesh",
    "japan": "korea", "germany": "france", "london": "paris", "delhi": "mumbai", "mumbai": "delhi", "python": "java",
    "java": "python", "javascript": "ruby", "cat": "dog", "dog": "cat", "cats": "dogs", "dogs": "cats",
    "morning": "evening", "love": "hate", "hate": "love", "win": "lose", "gain": "lose", "lose": "gain",
    "first": "last", "bad": "good", "good": "bad", "poor": "rich", "easy": "difficult", "happy": "sad",
    "true": "false", "positive": "negative", "advantages": "disadvantages", "disadvantages": "advantages",
    "facebook": "twitter", "google": "amazon", "trump": "obama", "hillary": "trump",
    "engineering": "medicine", "physics": "chemistry", "chemistry": "biology", "biology": "physics",
    "math": "history", "summer": "winter", "winter": "summer", "hot": "cold", "cold": "hot", "north": "south",
    "south": "north", "bitcoin": "gold", "hindi": "tamil", "english": "french", "doctor": "lawyer",
    "engineer": "doctor", "wife": "husband", "husband": "wife", "mother": "father", "father": "mother",
    "legal": "illegal", "cheap": "expensive", "learn": "teach", "read": "write", "import": "export",
    "marriage": "divorce", "married": "divorced", "heaven": "hell", 
    "windows": "linux", "linux": "windows", "car": "bike", "fat": "thin", "weight": "height",
    "sleep": "wake", "asleep": "awake", "future": "past", "past": "future", "internal": "external",
    "cheapest": "costliest", "online": "offline", "uber": "ola", "netflix": "hulu",
    "salary": "tax", "kill": "save", "marketing": "accounting", "friend": "enemy", "friends": "enemies",
}
_WORD = re.compile(r"[A-Za-z']+")


def substitute(question: str, table: dict[str, str], names: bool) -> list[tuple[str, str, str]]:
    """Every (old word, new word, new question) from replacing one whole word of `question` found in
    `table`; a capitalized word inside the question (a name: "Best Buy") only when `names`."""
    out = []
    for m in _WORD.finditer(question):
        word = m.group(0)
        new = table.get(word.lower())
        if new is None or (not names and m.start() > 0 and word[0].isupper()):
            continue
        if word[0].isupper():
            new = new[0].upper() + new[1:]
        out.append((word.lower(), new.lower(), question[: m.start()] + new + question[m.end():]))
    return out


def build(dev: Path, out: Path, n_source: int = 160, per_word: int = 4, seed: int = 0) -> int:
    """Write the set: questions of 4-14 words from dev, one pair per list, at most `per_word` source
    questions per changed word so that no word dominates."""
    import random

    rng = random.Random(seed)
    with open(dev, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    questions = sorted({r[k].strip() for r in rows for k in ("question1", "question2")})
    questions = [q for q in questions if 4 <= len(q.split()) <= 14 and q.endswith("?")]
    rng.shuffle(questions)
    used: dict[str, int] = {}
    records = []
    triplets = singles = 0
    for q in questions:
        same, other = substitute(q, SAME, False), substitute(q, OTHER, True)
        if not same and not other:
            continue
        pick_s = next((s for s in same if used.get("s:" + s[0], 0) < per_word), None)
        pick_o = next((o for o in other if used.get("o:" + o[0], 0) < per_word), None)
        if pick_s is None and pick_o is None:
            continue
        if pick_s is None or pick_o is None:  # keep at most as many singles as triplets
            if singles >= triplets or (pick_s and pick_o is None and singles % 2):
                continue
            singles += 1
        else:
            triplets += 1
        group = len({r["group"] for r in records})
        for kind, pick in (("same", pick_s), ("other", pick_o)):
            if pick is None:
                continue
            used[kind[0] + ":" + pick[0]] = used.get(kind[0] + ":" + pick[0], 0) + 1
            records.append({"group": group, "question1": q, "question2": pick[2], "is_duplicate": int(kind == "same"),
                            "changed": f"{pick[0]} -> {pick[1]}", "kind": kind})
        if group + 1 >= n_source:
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["group", "question1", "question2", "is_duplicate", "changed", "kind"])
        w.writeheader()
        w.writerows(records)
    print(f"wrote {len(records)} pairs ({triplets} triplets, {singles} single pairs) to {out}", file=sys.stderr)
    return len(records)


def read_set(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def summarize(name: str, rows: list[dict], scores: np.ndarray, duplicate: np.ndarray) -> dict:
    labels = np.array([int(r["is_duplicate"]) for r in rows], bool)
    by_group: dict[str, dict] = {}
    for r, s in zip(rows, scores.tolist()):
        by_group.setdefault(r["group"], {})[r["kind"]] = s
    trip = [g for g in by_group.values() if len(g) == 2]
    return {
        "system": name,
        "pairs": len(rows),
        "accuracy": float((duplicate == labels).mean()),
        "same_called_duplicate": float(duplicate[labels].mean()),
        "other_called_not": float((~duplicate[~labels]).mean()),
        "triplets": len(trip),
        "triplets_ordered": float(np.mean([g["same"] > g["other"] for g in trip])) if trip else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="store_true", help="rebuild the set from dev.csv")
    ap.add_argument("--dev", type=Path, default=DEV)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/minimal_pairs.json)")
    args = ap.parse_args()
    if args.build:
        build(args.dev, args.data)
    rows = read_set(args.data)
    q1, q2 = [r["question1"] for r in rows], [r["question2"] for r in rows]

    from dupfinder.engine import Engine, load_encoder

    results = []
    seen = set()
    for mode in ("auto", "head", "cosine"):
        try:
            engine = Engine(load_encoder(args.model), verdict=mode)
        except Exception:  # a model without a head: "head" is an error, "auto" the cosine
            continue
        if engine.verdict.kind in seen:
            continue
        seen.add(engine.verdict.kind)
        out = list(engine.similarities(zip(q1, q2)))
        results.append(summarize(f"dupfinder ({engine.verdict.kind})", rows, np.array([o["score"] for o in out]),
                                 np.array([o["duplicate"] for o in out])))
    if not args.no_minilm:
        from dupfinder.train.teacher import minilm  # the loader `dupfinder teacher` uses: the model files from PyPI, offline

        encode, _ = minilm(64)
        a, b = encode(q1), encode(q2)  # (n, 384) unit vectors
        s = (a * b).sum(1)
        results.append(summarize(f"all-MiniLM-L6-v2 (at {MINILM_THRESHOLD})", rows, s, s >= MINILM_THRESHOLD))
    for r in results:
        print(f"{r['system']:<40} pairs {r['accuracy']:.3f} (same {r['same_called_duplicate']:.3f}, other {r['other_called_not']:.3f})"
              f"  triplets {r['triplets_ordered']:.3f} of {r['triplets']}")
    record = {"command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "data": str(args.data.relative_to(HERE.parent)) if args.data.is_relative_to(HERE.parent) else str(args.data),
              "results": results}
    out = args.out or HERE / "results" / "minimal_pairs.json"
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
