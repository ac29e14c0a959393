"""FLARE 2025's keyword heuristics for report generation: `flare_report_score`, its clinical-efficacy
category score and its BLEU, reimplemented from the published definitions (utils/metrics.py of
medfm-flare/FLARE25-QWen2.5VL).

FLARE's tables call `flare_report_score` "GREEN"; it is not the model-based GREEN metric (for that
see medlib.evaluation.metrics.model_based). It is a weighted sum of seven keyword-based components: entity 0.30,
location 0.20, negation 0.15, temporal 0.10, measurement 0.10, clinical significance 0.10, structure 0.05.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

WEIGHTS = {
    "entity_matching": 0.30,
    "location_accuracy": 0.20,
    "negation_handling": 0.15,
    "temporal_accuracy": 0.10,
    "measurement_accuracy": 0.10,
    "clinical_significance": 0.10,
    "structure_completeness": 0.05,
}
# entity type: (terms, base severity, clinical weight); order matters nowhere here but is kept.
ENTITIES = {
    "normal": (("normal", "unremarkable", "no abnormality", "clear", "no acute findings"), 0, 1.0),
    "opacity": (("opacity", "opacities", "opacification", "density", "densities"), 2, 0.8),
    "consolidation": (("consolidation", "consolidations", "consolidated", "airspace disease"), 3, 0.9),
    "effusion": (("effusion", "effusions", "fluid", "pleural fluid"), 2, 0.8),
    "pneumothorax": (("pneumothorax", "pneumothoraces", "collapsed lung", "air leak"), 4, 1.0),
    "nodule": (("nodule", "nodules", "mass", "lesion", "tumor", "neoplasm"), 3, 0.9),
    "fracture": (("fracture", "fractures", "fractured", "break", "broken"), 3, 0.9),
    "cardiomegaly": (("cardiomegaly", "enlarged heart", "cardiac enlargement", "heart enlargement"), 2, 0.7),
    "edema": (("edema", "edematous", "swelling", "pulmonary edema", "interstitial edema"), 2, 0.8),
    "infiltrate": (("infiltrate", "infiltrates", "infiltration", "interstitial markings"), 2, 0.7),
    "atelectasis": (("atelectasis", "atelectatic", "collapse", "volume loss"), 2, 0.7),
    "pneumonia": (("pneumonia", "pneumonic", "infection", "infectious process"), 3, 0.9),
}
LOCATIONS = {
    "lung": ("lung", "lungs", "pulmonary", "pulmonic"),
    "lobe": ("lobe", "lobar"),
    "left": ("left", "left-sided", "left side"),
    "right": ("right", "right-sided", "right side"),
    "upper": ("upper", "superior", "apex", "apical", "apices"),
    "lower": ("lower", "inferior", "base", "basal", "basilar"),
    "middle": ("middle", "mid", "central", "lingula", "lingular"),
    "bilateral": ("bilateral", "both", "bibasilar", "bilaterally"),
    "unilateral": ("unilateral", "one side", "single"),
    "heart": ("heart", "cardiac", "cardiovascular", "pericardium"),
    "mediastinum": ("mediastinum", "mediastinal", "hilar", "hilum"),
    "pleura": ("pleura", "pleural", "pleural space"),
    "chest": ("chest", "thorax", "thoracic", "hemithorax"),
    "diaphragm": ("diaphragm", "diaphragmatic", "hemidiaphragm"),
    "costophrenic": ("costophrenic", "cp angle", "costophrenic angle"),
}
# The first modifier (in this order) found anywhere in the ±50-character context wins, as a substring
# ("large" inside "enlarged" counts): a quirk of the definition, kept.
SEVERITY_MODIFIERS = {
    "mild": 0.3, "minimal": 0.2, "slight": 0.2, "moderate": 0.6, "marked": 0.8, "severe": 1.0,
    "extensive": 0.9, "large": 0.8, "small": 0.3, "tiny": 0.1, "trace": 0.1, "prominent": 0.7,
    "significant": 0.8,
}  # fmt: skip
TEMPORAL = {
    "new": ("new", "newly", "recent", "acute"),
    "old": ("old", "chronic", "longstanding", "prior"),
    "unchanged": ("unchanged", "stable", "no change", "similar"),
    "improved": ("improved", "improving", "decreased", "resolving"),
    "worsened": ("worsened", "worsening", "increased", "progressed"),
}
UNCERTAINTY = {
    "possible": 0.3, "probable": 0.7, "likely": 0.7, "unlikely": 0.2, "questionable": 0.3, "suspected": 0.6,
    "concerning for": 0.7, "suggestive of": 0.6, "may represent": 0.5, "cannot exclude": 0.4,
    "differential includes": 0.5,
}  # fmt: skip
SECTIONS = ("findings", "impression", "comparison", "technique", "recommendation")
CE_CATEGORIES = {
    "critical": ("emergency", "urgent", "critical", "acute", "severe"),
    "abnormal": ("abnormal", "abnormality", "pathology", "disease", "disorder"),
    "normal": ("normal", "unremarkable", "clear", "no acute", "negative"),
    "uncertain": ("possible", "probable", "suspicious", "concerning", "question"),
}

_SIZE_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (
        r"(\d+\.?\d*)\s*(cm|mm|millimeter|centimeter)",
        r"(\d+\.?\d*)\s*x\s*(\d+\.?\d*)\s*(cm|mm)",
        r"measuring\s*(\d+\.?\d*)\s*(cm|mm)",
        r"size\s*of\s*(\d+\.?\d*)\s*(cm|mm)",
    )
)
_NEGATION = re.compile(
    r"\bno\b|\bnot\b|\bwithout\b|\babsent\b|\bnegative\b|\bdenied\b|\bnone\b|\bfree of\b|\brule out\b"
    r"|\bruled out\b|\bno evidence\b|\bno signs\b"
)
_NUMBER = re.compile(r"(\d+\.?\d*)")
_CONTEXT = 50


def _word_patterns(groups: dict[str, tuple[str, ...]]) -> dict[str, list[tuple[str, re.Pattern]]]:
    """Whole-word patterns for every term of every group."""
    return {name: [(t, re.compile(r"\b" + re.escape(t) + r"\b")) for t in terms] for name, terms in groups.items()}


_ENTITY_PATTERNS = _word_patterns({name: terms for name, (terms, _, _) in ENTITIES.items()})
_LOCATION_PATTERNS = _word_patterns(LOCATIONS)
_TEMPORAL_PATTERNS = _word_patterns(TEMPORAL)


@dataclass(frozen=True)
class Mention:
    """One entity mention: term, start offset, severity, uncertainty, size text, clinical weight, negated."""

    term: str
    start: int
    severity: float
    uncertainty: float
    size: str | None
    weight: float
    negated: bool


def _negated(lowered: str, position: int) -> bool:
    """A negation cue within the 50 characters before the position."""
    return _NEGATION.search(lowered[max(0, position - _CONTEXT) : position]) is not None


def extract_mentions(text: str) -> dict[str, list[Mention]]:
    """Entity type → mentions, each with severity, uncertainty and size read from ±50 characters."""
    lowered = text.lower()
    found: dict[str, list[Mention]] = {}
    for name, patterns in _ENTITY_PATTERNS.items():
        _, base_severity, weight = ENTITIES[name]
        mentions = []
        for term, pattern in patterns:
            if term not in lowered:  # a plain substring test first: most terms are absent from a report
                continue
            for match in pattern.finditer(lowered):
                context = lowered[max(0, match.start() - _CONTEXT) : match.end() + _CONTEXT]
                modifier = next((w for m, w in SEVERITY_MODIFIERS.items() if m in context), 1.0)
                confidence = next((c for m, c in UNCERTAINTY.items() if m in context), None)
                size = next((s.group(0) for s in (p.search(context) for p in _SIZE_PATTERNS) if s), None)
                mentions.append(Mention(
                    term, match.start(), base_severity * modifier, 0.0 if confidence is None else 1.0 - confidence,
                    size, weight, _negated(lowered, match.start()),
                ))  # fmt: skip
        if mentions:
            found[name] = mentions
    return found


def _present_groups(text: str, patterns: dict[str, list[tuple[str, re.Pattern]]]) -> set[str]:
    """Names of the groups with at least one whole-word term in the lower-cased text."""
    lowered = text.lower()
    return {name for name, terms in patterns.items() if any(t in lowered and p.search(lowered) for t, p in terms)}


def compare_sizes(size_a: str, size_b: str) -> float:
    """1 / 0.8 / 0.5 / 0.2 for first numbers within 10 / 20 / 50 / more percent of each other."""
    numbers_a, numbers_b = _NUMBER.findall(size_a), _NUMBER.findall(size_b)
    if not numbers_a or not numbers_b:
        return 0.0
    value_a, value_b = float(numbers_a[0]), float(numbers_b[0])
    largest = max(abs(value_a), abs(value_b))
    if largest == 0:
        return 1.0
    difference = abs(value_a - value_b) / largest
    return 1.0 if difference < 0.1 else 0.8 if difference < 0.2 else 0.5 if difference < 0.5 else 0.2


def _entity_score(generated: dict, reference: dict) -> float:
    """Weighted best-match score of each reference mention (negation .4, severity .3, uncertainty .2, size .1)."""
    if not reference:
        return 1.0 if not generated else 0.0
    total = weight_sum = 0.0
    for name, ref_mentions in reference.items():
        for ref in ref_mentions:
            weight_sum += ref.weight
            best = 0.0
            for gen in generated.get(name, []):
                score = 0.4 * (ref.negated == gen.negated)
                score += 0.3 * max(0.0, 1 - abs(ref.severity - gen.severity) / 4.0)
                score += 0.2 * max(0.0, 1 - abs(ref.uncertainty - gen.uncertainty))
                if ref.size and gen.size:
                    score += 0.1 * compare_sizes(ref.size, gen.size)
                elif not ref.size and not gen.size:
                    score += 0.1
                best = max(best, score)
            total += best * ref.weight
    return total / weight_sum if weight_sum > 0 else 0.0


def _location_score(generated: set[str], reference: set[str]) -> float:
    """Jaccard similarity of the location groups (1 / 0 when the reference names none)."""
    if not reference:
        return 1.0 if not generated else 0.0
    return len(generated & reference) / len(generated | reference)


def _negation_score(generated: dict, reference: dict) -> float:
    """Mean over reference mentions of shared types of the best negation (.6) + uncertainty (.4) agreement."""
    scores = [
        max(
            0.6 * (ref.negated == gen.negated) + 0.4 * max(0.0, 1 - abs(ref.uncertainty - gen.uncertainty) * 2)
            for gen in generated[name]
        )
        for name in set(generated) & set(reference)
        for ref in reference[name]
    ]
    return statistics.fmean(scores) if scores else 1.0


def _temporal_score(generated: set[str], reference: set[str], has_gen_entities: bool, has_ref_entities: bool) -> float:
    """Half the share of reference temporal groups reproduced, half a fixed 0.8/0.5 association term."""
    if not reference:
        return 1.0 if not generated else 0.5
    association = 0.8 if generated and has_gen_entities and has_ref_entities else 0.5
    return len(reference & generated) / len(reference) * 0.5 + association * 0.5


def _measurement_score(generated: dict, reference: dict) -> float:
    """Mean best size agreement over reference mentions with a size whose type was generated."""
    scores = [
        max((compare_sizes(ref.size, gen.size) for gen in generated[name] if gen.size), default=0.0)
        for name, ref_mentions in reference.items() if name in generated
        for ref in ref_mentions if ref.size
    ]  # fmt: skip
    return statistics.fmean(scores) if scores else 1.0


def _significance_score(generated: dict, reference: dict) -> float:
    """Severity-weighted share of reference mentions whose exact term was generated under the same type."""
    total = weight_sum = 0.0
    for name, ref_mentions in reference.items():
        generated_terms = {gen.term for gen in generated.get(name, [])}
        for ref in ref_mentions:
            weight = ENTITIES[name][2] * (1 + ref.severity / 4.0)
            weight_sum += weight
            total += weight if ref.term in generated_terms else 0.0
    return total / weight_sum if weight_sum > 0 else 0.0


def _structure_score(generated: str, reference: str) -> float:
    """0.7 × share of the reference's section words present + 0.3 × length-ratio score."""
    gen_lower, ref_lower = generated.lower(), reference.lower()
    wanted = [s for s in SECTIONS if s in ref_lower]
    section_score = sum(s in gen_lower for s in wanted) / len(wanted) if wanted else 1.0
    ratio = len(generated) / len(reference) if reference else 0.0
    length_score = min(1.0, ratio) if ratio < 2.0 else max(0.0, 2.0 - ratio)
    return section_score * 0.7 + length_score * 0.3


def flare_report_components(generated: str, reference: str) -> dict[str, float]:
    """The seven component scores and their weighted sum (`overall`) for one report pair."""
    generated, reference = str(generated or ""), str(reference or "")
    gen_mentions, ref_mentions = extract_mentions(generated), extract_mentions(reference)
    components = {
        "entity_matching": _entity_score(gen_mentions, ref_mentions),
        "location_accuracy": _location_score(
            _present_groups(generated, _LOCATION_PATTERNS), _present_groups(reference, _LOCATION_PATTERNS)
        ),
        "negation_handling": _negation_score(gen_mentions, ref_mentions),
        "temporal_accuracy": _temporal_score(
            _present_groups(generated, _TEMPORAL_PATTERNS), _present_groups(reference, _TEMPORAL_PATTERNS),
            bool(gen_mentions), bool(ref_mentions),
        ),  # fmt: skip
        "measurement_accuracy": _measurement_score(gen_mentions, ref_mentions),
        "clinical_significance": _significance_score(gen_mentions, ref_mentions),
        "structure_completeness": _structure_score(generated, reference),
    }
    components["overall"] = sum(WEIGHTS[name] * value for name, value in components.items())
    return components


def flare_report_score(generated: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean `overall` (FLARE's "GREEN" column) and mean of each component over report pairs."""
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} reports but {len(references)} references; they must pair up")
    per_item = [flare_report_components(g, r) for g, r in zip(generated, references)]
    if not per_item:
        return {name: float("nan") for name in ["overall", *WEIGHTS]}
    return {name: statistics.fmean(item[name] for item in per_item) for name in per_item[0]}


def report_category(text: str) -> str:
    """critical / abnormal / normal / uncertain: the first category (in that order) with a term whose
    first occurrence has no "no ", "not " or "without" in the 20 characters before it; else normal."""
    lowered = str(text or "").lower()
    for category, terms in CE_CATEGORIES.items():
        for term in terms:
            position = lowered.find(term)
            if position >= 0:
                window = lowered[max(0, position - 20) : position]
                if not any(cue in window for cue in ("no ", "not ", "without")):
                    return category
    return "normal"


def clinical_efficacy(generated: Sequence[str], references: Sequence[str]) -> float:
    """Share of reports in the reference's category; critical vs abnormal earns half."""
    if not generated:
        return 0.0
    credit = 0.0
    for g, r in zip(generated, references):
        gen_category, ref_category = report_category(g), report_category(r)
        if gen_category == ref_category:
            credit += 1.0
        elif {gen_category, ref_category} <= {"critical", "abnormal"}:
            credit += 0.5
    return credit / len(generated)


def flare_bleu(generated: Sequence[str], references: Sequence[str], max_order: int = 4) -> float:
    """FLARE's BLEU: whitespace tokens, mean of per-report clipped precisions, corpus brevity penalty."""
    gen_tokens = [str(g).lower().split() for g in generated]
    ref_tokens = [str(r).lower().split() for r in references]
    # The brevity penalty uses case-kept lengths in the original; lower() does not change a split's length.
    gen_length, ref_length = sum(map(len, gen_tokens)), sum(map(len, ref_tokens))
    if gen_length > ref_length:
        brevity_penalty = 1.0
    elif gen_length == 0:
        brevity_penalty = 0.0
    else:
        brevity_penalty = math.exp(1 - ref_length / gen_length)
    log_precisions = []
    for n in range(1, min(max_order, 4) + 1):
        precisions = []
        for g, r in zip(gen_tokens, ref_tokens):
            g_ngrams = Counter(tuple(g[i : i + n]) for i in range(len(g) - n + 1))
            r_ngrams = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            total = sum(g_ngrams.values())
            precisions.append(sum((g_ngrams & r_ngrams).values()) / total if total else 0.0)
        mean_precision = statistics.fmean(precisions) if precisions else 0.0
        if mean_precision <= 0:
            return 0.0
        log_precisions.append(math.log(mean_precision))
    return brevity_penalty * math.exp(statistics.fmean(log_precisions)) if log_precisions else 0.0
