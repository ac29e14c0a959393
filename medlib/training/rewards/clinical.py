"""Offline clinical entity-and-negation extraction for reports: findings with present/absent/uncertain status."""

from __future__ import annotations

import re

# Canonical finding → pattern of its surface forms (radiology vocabulary, CheXpert-like classes).
ENTITY_PATTERNS = {
    "pleural_effusion": r"effusions?",
    "pneumothorax": r"pneumothora(?:x|ces)",
    "consolidation": r"consolidations?|consolidative",
    "edema": r"o?edema(?:tous)?|vascular congestion",
    "cardiomegaly": r"cardiomegaly|enlarged (?:heart|cardiac silhouette)|(?:heart|cardiac silhouette) is enlarged",
    "atelectasis": r"atelecta(?:sis|ses|tic)",
    "opacity": r"opacit(?:y|ies)|opacification",
    "nodule": r"nodules?|nodular",
    "mass": r"mass(?:es)?",
    "fracture": r"fractures?|fractured",
    "pneumonia": r"pneumonias?",
    "emphysema": r"emphysema(?:tous)?|hyperinflat(?:ed|ion)",
    "fibrosis": r"fibrosis|fibrotic",
    "lesion": r"lesions?",
    "infiltrate": r"infiltrat(?:e|es|ion)",
    "hernia": r"hernias?",
    "calcification": r"calcifications?|calcified",
    "lymphadenopathy": r"lymphadenopathy|enlarged lymph nodes?",
    "pleural_thickening": r"pleural thickening",
    "support_device": r"(?:endotracheal|nasogastric|feeding|chest) tubes?|catheters?|pacemakers?|picc lines?",
    "hemorrhage": r"ha?emorrhages?|hematomas?|haematomas?",
    "infarct": r"infarcts?|infarction",
    "tumor": r"tumou?rs?|neoplasms?|malignanc(?:y|ies)",
    "cyst": r"cysts?|cystic",
    "stone": r"calcul(?:us|i)|stones?",
    "dilation": r"dilat(?:ed|ation|ion)",
    "scoliosis": r"scoliosis",
    "granuloma": r"granulomas?|granulomatous",
}
STATUSES = ("present", "absent", "uncertain")

_ENTITY = re.compile(
    "|".join(f"(?P<{name}>\\b(?:{pattern})\\b)" for name, pattern in ENTITY_PATTERNS.items()), re.IGNORECASE
)
# Uncertainty is matched first: "cannot be excluded" contains a negation word but means "possible".
_UNCERTAIN = re.compile(
    r"\b(?:cannot be (?:excluded|ruled out)|cannot exclude|can ?not rule out|not (?:be )?excluded|possible|"
    r"possibly|probable|probably|may|might|could|suspicious for|suspected|questionable|concern(?:ing)? for|"
    r"suggest(?:s|ive of)?|versus|vs|equivocal|likely|unclear|indeterminate)\b",
    re.IGNORECASE,
)
_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|negative for|free of|absence of|absent|no evidence of|no signs? of|"
    r"rules? out|ruled out|resolution of|resolved|clear of|neither|nor)\b",
    re.IGNORECASE,
)
_NEGATION_AFTER = re.compile(
    r"\b(?:(?:is|are|was|were) (?:absent|not seen|not identified|not present)|not seen|not identified|"
    r"(?:has|have) resolved|resolved|removed)\b",
    re.IGNORECASE,
)
# Clauses: a sentence, or the parts of a sentence either side of a contrast.
_CLAUSE_BREAK = re.compile(r"[.;:!?\n]+|\b(?:but|however|although|except|though|whereas)\b", re.IGNORECASE)
MAX_REPORT_CHARS = 20000


def _status(before: str, after: str) -> str:
    """Status of a mention from the clause text before and after it."""
    if _UNCERTAIN.search(before) or _UNCERTAIN.search(after):
        return "uncertain"
    if _NEGATION_BEFORE.search(before) or _NEGATION_AFTER.search(after):
        return "absent"
    return "present"


def clinical_mentions(text: str) -> set[tuple[str, str]]:
    """Set of (finding, status) mentioned in a report, status one of present/absent/uncertain."""
    if not isinstance(text, str):
        return set()
    mentions: set[tuple[str, str]] = set()
    for clause in _CLAUSE_BREAK.split(text[:MAX_REPORT_CHARS]):
        for match in _ENTITY.finditer(clause):
            finding = match.lastgroup or ""
            mentions.add((finding, _status(clause[: match.start()], clause[match.end() :])))
    return mentions


def clinical_f1(reference: str, prediction: str) -> float:
    """F1 between the (finding, status) sets of two reports; 1.0 when neither mentions a finding."""
    expected, found = clinical_mentions(reference), clinical_mentions(prediction)
    if not expected and not found:
        return 1.0
    return 2 * len(expected & found) / (len(expected) + len(found))
