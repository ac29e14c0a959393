#!/usr/bin/env bash
# Install WordNet 3.0 for nltk's METEOR offline, from Debian's packages, into $NLTK_DATA
# (default .venv/nltk_data). Idempotent: does nothing when the corpus is already there.
# nltk refuses corpora outside its data folders (a symlink fails), and Debian does not ship the
# `lexnames` file nltk reads, so the files are copied and lexnames is written here.
set -euo pipefail
NLTK_DATA="${NLTK_DATA:-$(cd "$(dirname "$0")/.." && pwd)/.venv/nltk_data}"
TARGET="$NLTK_DATA/corpora/wordnet"
if [ -s "$TARGET/data.noun" ] && [ -s "$TARGET/lexnames" ] && [ -s "$TARGET/index.sense" ]; then
    echo "WordNet already in $TARGET"
    exit 0
fi
if [ ! -s /usr/share/wordnet/data.noun ] || [ ! -s /usr/share/wordnet/index.sense ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null
fi
mkdir -p "$TARGET"
cp -r /usr/share/wordnet/. "$TARGET/"
# WordNet 3.0 lexicographer files: number, name, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
python3 - "$TARGET/lexnames" <<'PY'
import sys
names = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute
noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group
noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession
noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time
verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption
verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession verb.social
verb.stative verb.weather adj.ppl""".split()
category = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
with open(sys.argv[1], "w") as out:
    for number, name in enumerate(names):
        out.write(f"{number:02d}\t{name}\t{category[name.split('.')[0]]}\n")
PY
echo "WordNet installed in $TARGET"
