"""Review text for the synthetic Amazon dumps, whose words depend on the star rating and on the
verified-purchase flag, so the review models (:mod:`batchml.reviews`) have something to learn.

A review has ``3 + Poisson(lambda g)`` words, ``g`` a Gamma(2, 1/2) draw of mean 1 (lengths vary a
lot), lambda a little larger for unverified reviews (free samples come with longer reviews).  Each word is

* a **sentiment** word (probability :data:`P_SENTIMENT`) from the list of a star level drawn around
  ``s`` (``s`` with probability 0.6, a neighbour level otherwise), Zipf-distributed within the list,
  so a long tail of informative words lies outside the most frequent ones; in 1-2 star reviews a
  quarter of them are ``not`` + a 4-5 star word (``not great``), in 4-5 star reviews a tenth are
  ``not`` + a 1-2 star word (``not bad``): bigrams carry what unigrams get wrong;
* a **purchase** word (:data:`P_PURCHASE`): delivery words for verified purchases, free-sample words
  for the others, the list of the other class one time in four;
* else a **neutral** word (stop words included), Zipf-distributed.

Verified is drawn from the rating: P(verified) = sigmoid(1.4 + 0.3 (s - 3)), about 80 %.

``html=True`` (the TSV files) writes the text the way the Customer Reviews dump does: ``<br />``
between sentences, quotes as ``&#34;``, ``&`` as ``&amp;``, plus the odd literal ``"`` (``a 5"
screen``); otherwise (JSON lines) plain text.  ``lang="fr"`` draws from French lists (the ``FR``
marketplace sample).  Everything is vectorized (numpy + pyarrow), deterministic given the generator.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

P_SENTIMENT = 0.3
P_PURCHASE = 0.08
P_WRONG_PURCHASE = 0.25
WORDS_VERIFIED, WORDS_UNVERIFIED = 16, 20

_EN = {
    "levels": {
        1: "terrible awful broken useless waste refund junk worst defective garbage horrible returned "
           "unusable cheaply dangerous scam poorest disgusting shoddy rubbish worthless failed dead "
           "fraud nightmare",
        2: "disappointing flimsy mediocre poor weak cheap meh lacking underwhelming overpriced faulty "
           "noisy unreliable frustrating annoying subpar sloppy dull leaky wobbly scratched loose "
           "stiff confusing",
        3: "okay average decent fine alright mixed acceptable passable ordinary moderate fair "
           "reasonable adequate tolerable standard middling so-so plain usable basic compromise "
           "uneven modest sufficient",
        4: "good nice solid happy pleased sturdy useful reliable handy comfortable recommend "
           "satisfied works quality enjoyable helpful smooth clean accurate durable convenient "
           "attractive pretty worthwhile",
        5: "excellent perfect amazing love awesome fantastic outstanding superb flawless wonderful "
           "brilliant best incredible gorgeous delighted exceptional stunning favorite superior "
           "thrilled magnificent impeccable terrific fabulous",
    },
    "summaries": {
        1: ["One Star", "Terrible", "Waste of money", "Broke after a week", "Do not buy"],
        2: ["Two Stars", "Disappointing", 'Not "great"', "Meh", "Expected better"],
        3: ["Three Stars", "It's okay", "Average", 'He said "wow', "Mixed feelings"],
        4: ["Four Stars", "Good value", "Works as advertised", "Nice", "Happy with it"],
        5: ["Five Stars", "Love it!", "Perfect", "Excellent", "Best purchase ever"],
    },
    "verified": "arrived shipping delivery package ordered seller box shipped quickly tracking "
                "packaging delivered prime order purchased",
    "unverified": "free sample exchange honest unbiased discount provided opinion received "
                  "complimentary promotion tester disclosure gifted",
    "neutral": "the i it this and a to for my is was of with in that on but have product use "
               "item bought one time just get would after also so very really when which can "
               "been had much more they color size price son daughter husband wife work home "
               "day week month year first again still back set button battery cable screen "
               "sound case brand model version light weight hand & 5\" some other than about",
    "not": "not",
}
_FR = {
    "levels": {
        1: "nul cassé arnaque remboursement horrible inutilisable défectueux déçu pire honteux",
        2: "décevant fragile médiocre bruyant cher moyen lent compliqué",
        3: "correct moyen acceptable passable ordinaire convenable",
        4: "bien pratique solide agréable efficace fiable satisfait utile",
        5: "excellent parfait génial superbe magnifique recommande idéal impeccable qualité",
    },
    "summaries": {1: ["Une étoile", "À éviter"], 2: ["Deux étoiles", "Déçu"], 3: ["Trois étoiles", "Correct"],
                  4: ["Quatre étoiles", "Très bien"], 5: ["Cinq étoiles", "Parfait !"]},
    "verified": "livraison reçu colis commandé vendeur emballage rapide",
    "unverified": "gratuit échantillon échange honnête avis offert",
    "neutral": "le la les de des un une et est pour avec ce produit mais très il elle à été "
               "pas trop prix taille fils fille maison jour semaine après aussi",
    "not": "pas",
}
LANGS = {"en": _EN, "fr": _FR}


def _zipf(rng: np.random.Generator, n_words: int, size: int, a: float = 1.05) -> np.ndarray:
    """``size`` indices in ``[0, n_words)``, P(k) proportional to 1 / (k + 1)^a."""
    p = 1.0 / np.arange(1, n_words + 1) ** a
    return rng.choice(n_words, size=size, p=p / p.sum())


def draw_verified(rng: np.random.Generator, ratings: np.ndarray) -> np.ndarray:
    """Verified flags, more likely for higher ratings: sigmoid(1.4 + 0.3 (s - 3)), ~80 % overall."""
    p = 1.0 / (1.0 + np.exp(-(1.4 + 0.3 * (ratings.astype(np.float64) - 3))))
    return rng.random(len(ratings)) < p


class _Vocab:
    """The word lists of a language as one string array, with the offset and size of each list."""

    def __init__(self, lang: dict):
        lists = {f"level{s}": lang["levels"][s].split() for s in range(1, 6)}
        lists.update(verified=lang["verified"].split(), unverified=lang["unverified"].split(),
                     neutral=lang["neutral"].split())
        self.words = pa.array([w for ws in lists.values() for w in ws], pa.string())
        sizes = np.array([len(ws) for ws in lists.values()])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.start = dict(zip(lists, starts.tolist()))
        self.size = dict(zip(lists, sizes.tolist()))

    def draw(self, rng: np.random.Generator, name: str, size: int) -> np.ndarray:
        return self.start[name] + _zipf(rng, self.size[name], size)

    def draw_levels(self, rng: np.random.Generator, levels: np.ndarray) -> np.ndarray:
        out = np.empty(len(levels), np.int64)
        for s in range(1, 6):
            at = np.flatnonzero(levels == s)
            out[at] = self.draw(rng, f"level{s}", len(at))
        return out


def _token_ids(rng: np.random.Generator, vocab: _Vocab, rating_t: np.ndarray, verified_t: np.ndarray):
    """Per token: its word id and whether ``not`` precedes it."""
    n = len(rating_t)
    kind = rng.random(n)
    ids = vocab.draw(rng, "neutral", n)
    sent = kind < P_SENTIMENT
    level = np.clip(rating_t + rng.choice([-1, 0, 1], size=n, p=[0.2, 0.6, 0.2]), 1, 5)
    flip = rng.random(n)
    negated = sent & (((rating_t <= 2) & (flip < 0.25)) | ((rating_t >= 4) & (flip < 0.10)))
    level = np.where(negated, np.where(rating_t <= 2, rng.integers(4, 6, n), rng.integers(1, 3, n)), level)
    ids[sent] = vocab.draw_levels(rng, level[sent])
    purchase = (kind >= P_SENTIMENT) & (kind < P_SENTIMENT + P_PURCHASE)
    as_verified = verified_t ^ (rng.random(n) < P_WRONG_PURCHASE)
    for flag, name in ((True, "verified"), (False, "unverified")):
        at = purchase & (as_verified == flag)
        ids[at] = vocab.draw(rng, name, int(at.sum()))
    return ids, negated


def _html(rng: np.random.Generator, tokens: pa.Array) -> pa.Array:
    """Tokens as the TSV dump writes them: ``&`` as ``&amp;``, some quoted with ``&#34;``, some ending
    a sentence with ``<br />``."""
    n = len(tokens)
    tokens = pc.replace_substring(tokens, "&", "&amp;")
    quote = pa.array(np.where(rng.random(n) < 0.02, "&#34;", ""), pa.string())
    br = pa.array(np.where(rng.random(n) < 0.05, ".<br />", ""), pa.string())
    return pc.binary_join_element_wise(quote, tokens, quote, br, "")


def draw_texts(rng: np.random.Generator, ratings: np.ndarray, verified: np.ndarray, *, html: bool,
               lang: str = "en") -> tuple[pa.Array, pa.Array]:
    """``(summary, body)`` string arrays of reviews with these ``ratings`` (1..5) and ``verified``
    flags (see the module docstring)."""
    vocab, words = _Vocab(LANGS[lang]), LANGS[lang]
    ratings = np.asarray(ratings).astype(np.int64)
    n = len(ratings)
    lengths = 3 + rng.poisson(np.where(verified, WORDS_VERIFIED, WORDS_UNVERIFIED) * rng.gamma(2.0, 0.5, n))
    review_of = np.repeat(np.arange(n), lengths)
    ids, negated = _token_ids(rng, vocab, ratings[review_of], np.asarray(verified)[review_of])
    tokens = vocab.words.take(pa.array(ids))
    tokens = pc.binary_join_element_wise(pa.array(np.where(negated, words["not"] + " ", ""), pa.string()),
                                         tokens, "")
    if html:
        tokens = _html(rng, tokens)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    body = pc.binary_join(pa.ListArray.from_arrays(offsets, tokens), " ")
    levels = np.clip(ratings + rng.choice([-1, 0, 1], size=n, p=[0.15, 0.7, 0.15]), 1, 5)
    summaries = [words["summaries"][s] for s in range(1, 6)]
    flat = [t for group in summaries for t in group]
    first = np.cumsum([0] + [len(g) for g in summaries])
    pick = first[levels - 1] + (rng.random(n) * np.array([len(summaries[s - 1]) for s in levels])).astype(int)
    summary = pa.array(flat, pa.string()).take(pa.array(pick))
    if html:
        summary = pc.replace_substring(summary, '"', "&#34;")
    return summary, body
