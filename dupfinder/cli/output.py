"""Every output format in one place: JSON objects, JSON lines, and the tables people read."""

from __future__ import annotations

import json
import math

import click


def _clean(value):
    """NaN and infinities become null: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _clean(value.item())
    return value


def dumps(obj) -> str:
    return json.dumps(_clean(obj), allow_nan=False)


def emit_json(obj, err: bool = False) -> None:
    """One JSON object on a line (stdout, or stderr when stdout carries data)."""
    click.echo(dumps(obj), err=err)


RULE_NAMES = {"head": "pair head", "head+verifier": "head + verifier"}  # the verdict rules with a score of their own


def rule_text(kind: str, threshold: float) -> str:
    """"head + verifier threshold 0.5303", or "tau 0.5940" under the cosine rule."""
    return f"{RULE_NAMES[kind]} threshold {threshold:.4f}" if kind in RULE_NAMES else f"tau {threshold:.4f}"


def verdict_line(result: dict) -> str:
    line = f"{result['score']:.4f}  {'duplicate' if result['duplicate'] else 'not duplicate'}"
    if result.get("verdict") in RULE_NAMES:
        return line + f" ({RULE_NAMES[result['verdict']]}, threshold {result['threshold']:.4f}; cosine {result['cosine']:.4f})"
    return line + f" (tau {result['threshold']:.4f})"


def hits_table(hits, tau: float) -> str:
    """The hits of one query, best first, then a line that says what was found."""
    head = any(h.verdict_score is not None for h in hits)
    lines = [f"{h.score:7.4f}  {f'p {h.verdict_score:.2f}  ' if head else ''}{'DUPLICATE' if h.duplicate else '         '}  [{h.id}] {h.text}"
             for h in hits]
    n_dup = sum(h.duplicate for h in hits)
    rule = f"verdict threshold {tau:.4f}" if head else f"tau {tau:.4f}"
    if n_dup:
        lines.append(f"{n_dup} duplicate{'s' if n_dup > 1 else ''} at {rule}")
    elif hits and head:
        lines.append(f"No duplicate: the verdict gives at most p {max(h.verdict_score for h in hits):.4f}, below {tau:.4f}")
    elif hits:
        lines.append(f"No duplicate: the best match scores {hits[0].score:.4f}, below tau {tau:.4f}")
    else:
        lines.append("No duplicate: the index is empty")
    return "\n".join(lines)


def info_table(result: dict) -> str:
    lines = [
        f"index      {result['index']}",
        f"questions  {result['count']:,}",
        f"kind       {result['kind']} ({result['metric']})",
        f"dimension  {result['dimension']}",
        f"model      {result['model']} ({result['model_fingerprint']}, {rule_text(result.get('verdict', 'cosine'), result['threshold'])})",
        f"size       {result['size_bytes'] / 1e6:,.1f} MB",
        f"updated    {result['updated']}",
    ]
    sources = list(result["sources"].items())
    for i, (source, n) in enumerate(sources[:5]):
        lines.append(f"{'sources' if i == 0 else '':<10} {source or '(none)'} ({n:,})")
    if len(sources) > 5:
        lines.append(f"{'':<10} and {len(sources) - 5:,} more")
    return "\n".join(lines)


def pair_metrics_table(title: str, m: dict, kind: str = "cosine") -> str:
    c = m["confusion"]
    return (
        f"{title}: {m['pairs']:,} pairs at {rule_text(kind, m['threshold'])}\n"
        f"  accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
        f"F1 {m['f1']:.4f}  ROC-AUC {m['roc_auc']:.4f}\n"
        f"  confusion: {c['tp']:,} true dup, {c['fp']:,} false dup, {c['fn']:,} missed dup, {c['tn']:,} true non-dup"
    )


def calibration_line(title: str, m: dict) -> str:
    return (f"{title}: tau {m['threshold']:.4f}  accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}  "
            f"precision {m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}")
