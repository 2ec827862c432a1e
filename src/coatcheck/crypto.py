"""Session ids, the keyring of secrets, id signing in express-session's format, key derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import string
from collections.abc import Sequence
from urllib.parse import quote, unquote_to_bytes

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._hmac import HmacSha256
from .errors import ConfigurationError

logger = logging.getLogger("coatcheck")
ID_BYTES = 32
MIN_SECRET_BITS = 128  # what a random 16-byte key is worth; see estimated_bits
MAX_SIGNED_ID = 512  # longest signed-id cookie value we will even look at
_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")  # ids encodeURIComponent leaves unchanged (ours all are)

SIGNIFICANT_BITS = 20  # savings a code must show before a secret counts as structured
_WIDEN_BITS = 8  # see _symbols
_EXAMINED = 256  # symbols examined by estimated_bits (the LZ search is quadratic in them)
_HEX = string.digits + "abcdef"
_ALPHABETS = [
    frozenset(chars)
    for chars in (
        string.digits,
        _HEX,
        _HEX.upper(),
        string.hexdigits,
        string.ascii_lowercase,
        string.ascii_uppercase,
        string.ascii_lowercase + string.digits,
        string.ascii_uppercase + string.digits,
        string.ascii_letters,
        string.ascii_letters + string.digits,
        string.ascii_letters + string.digits + "-_",
        string.ascii_letters + string.digits + "+/=",
        "".join(chr(c) for c in range(32, 127)),
    )
]
_SEPARATORS = ("", " ", "-", "_", ".")
_CASE_BITS = {str.lower: -math.log2(0.8), str.capitalize: -math.log2(0.15), str.upper: -math.log2(0.05)}
_SINGULAR_BITS, _PLURAL_BITS = -math.log2(0.9), -math.log2(0.1)
_SEPARATED_BITS, _UNSEPARATED_BITS = -math.log2(0.9), -math.log2(0.1)  # a word, then the separator?
# The passphrase code's dictionary, cheapest first: the 100 most frequent English words, words
# common in secrets people write, then common English and password words (alphabetical).
# A word's rank sets its cost (Zipf's law).
_WORD_TEXT = """
    the of and to a in is you that it he was for on are as with his they i at be this have from or one had
    by word but not what all were we when your can said there use an each which she do how their if will up
    other about out many then them these so some her would make like him into time has look two more write
    go see number no way could people my than first water been call who its now find long down day did get
    come made may part secret key password passphrase session cookie token app web site api server admin
    root user login dev development prod production staging local test testing demo example default insecure
    unsafe change replace deploy never share commit flask django express node python javascript company
    project sign signing encrypt encryption hash salt data database config settings environment random
    string very really super private temporary above across act add after again against age ago air almost
    alone along already also always am among animal another answer any anything apple area arm around art
    ask away baby back bad bag ball bank base battery bear beautiful because become bed before begin behind
    believe best better between big bird black blue boat body book both box boy brown build buy came car
    card care carry case cat catch cause changeme city class clear close cold color common cook cool correct
    country course cover cut dark dead dear deep different doctor does dog done door dragon draw dream drink
    drive dry during early earth easy eat egg end enough even evening ever every eye face fact fall family
    far farm fast father feel feet few field fight fine fire fish five fly follow food foot force forest
    form four free friend front full fun game garden gave girl give glass god gold good got great green
    ground group grow half hand happy hard head hear heart heavy hello help here high hill hold home horse
    hot hour house hundred ice idea important inside island just keep keyboard kind king know lady land
    large last late laugh lazy learn least leave left leg less let letmein letter life light line lion list
    listen little live lost lot love low man map master me mean men might milk mind minute miss money monkey
    moon morning most mother mountain move much music must name near need new next nice night north nothing
    off often oh old once only open orange order our over own page paper park party pass person pick picture
    piece place plan plant play please point poor power put queen question quick quite rain ran read ready
    real red remember rest right river road rock room round run same saw say school sea second seem self
    send sentence set seven shall ship short should show side simple since sing sister sit six size sky
    sleep slow small snow something son song soon sound south space special spring stand staple star start
    stay step still stone stop story street strong study such summer sun sure table take talk tea teach tell
    ten thank thing think those though three through today together told too took top toward town tree true
    try turn under until upon us voice wait walk wall want war warm watch week well went west where while
    white whole why wife wind window winter without woman wonder wood work world year yellow yes yet young
    zero
"""
_WORDS = {word: rank for rank, word in enumerate(_WORD_TEXT.split(), start=1)}
_ZIPF_BITS = math.log2(sum(1 / rank for rank in _WORDS.values()))
_LONGEST_WORD = max(map(len, _WORDS))
# English letter frequencies (percent), a to z: how the passphrase code spells unlisted words.
_LETTERS_A_TO_Z = (
    "8.2 1.5 2.8 4.3 12.7 2.2 2.0 6.1 7.0 0.15 0.77 4.0 2.4 "
    "6.7 7.5 1.9 0.1 6.0 6.3 9.1 2.8 0.98 2.4 0.15 2.0 0.074"
)
_LETTER_PERCENT = [float(p) for p in _LETTERS_A_TO_Z.split()]

HOW_TO_MAKE_ONE = (
    'make one with `coatcheck secret` or `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
)


def new_session_id(nbytes: int = ID_BYTES) -> str:
    """A fresh session id: `nbytes` (32) bytes from `secrets`, base64url without padding (43 chars)."""
    return secrets.token_urlsafe(nbytes)


def storage_key(session_id: str) -> str:
    """What stores key a record by: SHA-256 of the id, so a store dump yields no live cookie."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def estimated_bits(secret: bytes) -> float:
    """A conservative estimate, in bits, of how hard `secret` is to guess.

    The rule (minimum description length with a significance test):

    1. Symbols: printable ASCII text is read as characters drawn from the smallest common
       alphabet that holds them all (digits, hex, letters, alphanumerics, base64url, base64,
       printable ASCII); anything else, raw bytes or non-ASCII text, is read as bytes from
       an alphabet of 256. Only the first 256 symbols are examined.
    2. The *uniform* cost is `symbols * log2(alphabet)`: what a key drawn at random from
       that alphabet is worth (os.urandom(16) and secrets.token_hex(16) give 128 bits).
    3. Three codes try to describe the secret in fewer bits: an LZ77 code (repetition,
       periodic and near-periodic strings), an adaptive per-symbol code (few distinct
       symbols, skewed frequencies), and a passphrase code (words from a list of ~580
       common English words, words common in written secrets and password words, 3 to
       12 bits a word by rank, plus back references and English letter frequencies).
    4. If the best code is shorter than the uniform cost by `SIGNIFICANT_BITS` (20) or more,
       the secret is structured and its estimate is that code's length; otherwise the
       estimate is the uniform cost. A uniformly random string is compressed by 20 bits
       under a given code with probability at most 2**-20 (Kraft's inequality), and these
       codes pay for every token's kind, so random keys practically never lose bits here.

    Dictionary coverage is small: a passphrase of rare words, or in another language, is
    overestimated, and a sentence of a dozen or more everyday words can reach 128 bits.
    Never raises; the work is bounded by the examined prefix (milliseconds).
    """
    symbols, alphabet, reported = _symbols(secret)
    codes = [_lz_bits(symbols, alphabet), _adaptive_bits(symbols, alphabet)]
    if isinstance(symbols, str):
        codes.append(_passphrase_bits(symbols, alphabet))
    best = min(codes)
    if best <= len(symbols) * math.log2(alphabet) - SIGNIFICANT_BITS:
        return best
    return len(symbols) * math.log2(reported)


def _symbols(secret: bytes) -> tuple[str | bytes, int, int]:
    """The examined prefix as text or as bytes, the size of the smallest listed alphabet
    holding it (256 for bytes), and the size of the widest alphabet that is only slightly
    less likely (by under _WIDEN_BITS over the whole text): a random base64url key that
    happens to have no digit is still worth what base64url is worth (22 characters: 6.6
    bits), while 32 lowercase hex digits stay hex (widening to mixed case: 14.7 bits)."""
    head = secret[:_EXAMINED]
    if not all(32 <= b < 127 for b in head):
        return head, 256, 256
    text = head.decode("ascii")
    sizes = [len(alphabet) for alphabet in _ALPHABETS if set(text) <= alphabet]
    smallest = min(sizes)
    widest = max(s for s in sizes if len(text) * math.log2(s / smallest) < _WIDEN_BITS)
    return text, smallest, widest


def _lz_bits(symbols: str | bytes, alphabet: int) -> float:
    """Length of a greedy LZ77 code: a flag per token, then a literal symbol, or a back
    reference (offset among the positions so far, Elias-gamma length, overlap allowed)."""
    literal = 1 + math.log2(alphabet)
    n, i, bits = len(symbols), 0, 0.0
    while i < n:
        longest = _longest_match(symbols, i)
        reference = 1 + _reference_bits(i, longest)
        if reference < longest * literal:
            bits, i = bits + reference, i + longest
        else:
            bits, i = bits + literal, i + 1
    return bits


def _longest_match(symbols: str | bytes, i: int) -> int:
    """Length of the longest run at `i` that repeats one starting earlier (overlap allowed).

    Each candidate's length is found by binary search over slice comparisons, so a long
    run costs a few comparisons in C rather than a Python step per symbol."""
    n, longest = len(symbols), 0
    for j in range(i):
        if symbols[j + longest : j + longest + 1] != symbols[i + longest : i + longest + 1]:
            continue  # cannot beat the longest so far
        low, high = longest, n - i  # symbols[j:j+low] may not match yet; find the largest match
        while low < high:
            middle = (low + high + 1) // 2
            if symbols[j : j + middle] == symbols[i : i + middle]:
                low = middle
            else:
                high = middle - 1
        longest = max(longest, low)
        if longest == n - i:
            break
    return longest


def _reference_bits(i: int, length: int) -> float:
    """Bits of a back reference at `i`: the offset among `i` positions, then the length
    (at least 2) in Elias gamma code. Infinite for runs too short to refer to."""
    if length < 2:
        return math.inf
    return math.log2(i) + 2 * ((length - 1).bit_length() - 1) + 1


def _adaptive_bits(symbols: str | bytes, alphabet: int) -> float:
    """Length of an adaptive order-0 code (Krichevsky-Trofimov estimator): cheap when few
    distinct symbols are used or their frequencies are skewed."""
    counts: dict[object, int] = {}
    bits = 0.0
    for position, symbol in enumerate(symbols):
        seen = counts.get(symbol, 0)
        bits += math.log2((position + alphabet / 2) / (seen + 0.5))
        counts[symbol] = seen + 1
    return bits


def _passphrase_bits(text: str, alphabet: int) -> float:
    """Length of a passphrase code: one separator for the whole text (log2 of the choices),
    then per token its kind and either a listed word (kind probability 0.6; the word by
    Zipf's law on its rank, so "the" costs 3 bits and the 500th word 12), with its case
    (lower, Capitalized or UPPER), plural or not, then the separator or not (free at the
    end of the text); or one character spelled as English text (0.3, see
    `_spelling_bits`); or a back reference to earlier text (0.1, as in `_lz_bits`)."""
    spelled = _spelling_bits(alphabet)
    word = -math.log2(0.6) + _ZIPF_BITS  # + log2(rank), case and plural bits per word
    char, reference = -math.log2(0.3), -math.log2(0.1)
    repeats = [_longest_match(text, i) for i in range(len(text))]
    words = [_words_at(text, i) for i in range(len(text))]
    best = math.inf
    for separator in _SEPARATORS:
        cost = [0.0] + [math.inf] * len(text)
        for i in range(len(text)):
            cost[i + 1] = min(cost[i + 1], cost[i] + char + spelled.get(text[i], spelled[""]))
            if repeats[i] >= 2:
                end = i + repeats[i]
                cost[end] = min(cost[end], cost[i] + reference + _reference_bits(i, repeats[i]))
            for end, bits in words[i]:
                if end == len(text) or not separator:
                    cost[end] = min(cost[end], cost[i] + word + bits)
                    continue
                if text.startswith(separator, end):
                    after = end + len(separator)
                    cost[after] = min(cost[after], cost[i] + word + bits + _SEPARATED_BITS)
                cost[end] = min(cost[end], cost[i] + word + bits + _UNSEPARATED_BITS)
        best = min(best, cost[-1])
    return best + math.log2(len(_SEPARATORS))


def _words_at(text: str, i: int) -> list[tuple[int, float]]:
    """(end, bits of its rank and case) of every listed word, or plural of one, at `i`."""
    found = []
    for end in range(i + 1, min(i + _LONGEST_WORD + 1, len(text)) + 1):
        piece = text[i:end]
        lower = piece.lower()
        singular = _WORDS.get(lower)
        plural = _WORDS.get(lower[:-1]) if lower.endswith("s") else None
        case = next((bits for style, bits in _CASE_BITS.items() if style(piece) == piece), None)
        if case is None:
            continue
        if singular is not None:
            found.append((end, math.log2(singular) + case + _SINGULAR_BITS))
        elif plural is not None:
            found.append((end, math.log2(plural) + case + _PLURAL_BITS))
    return found


def _spelling_bits(alphabet: int) -> dict[str, float]:
    """Bits per character of the passphrase code's spelling (key "" is any other symbol):
    a lowercase letter by English frequency (probability 0.65), a space (0.15), an
    uppercase letter (0.1), or any symbol of the alphabet (0.1)."""
    bits = {"": -math.log2(0.1 / alphabet), " ": -math.log2(0.15 + 0.1 / alphabet)}
    for letter, percent in zip(string.ascii_lowercase, _LETTER_PERCENT, strict=True):
        bits[letter] = -math.log2(0.65 * percent / 100 + 0.1 / alphabet)
        bits[letter.upper()] = -math.log2(0.1 * percent / 100 + 0.1 / alphabet)
    return bits


class Keyring:
    """The configured secrets: the first signs and seals, every one verifies and opens."""

    def __init__(
        self, secret: str | bytes | Sequence[str | bytes], *, insecure_dev_secret: bool = False
    ) -> None:
        self.keys = as_secret_list(secret)
        self._macs = [HmacSha256(key) for key in self.keys]
        for position, key in enumerate(self.keys):
            bits = estimated_bits(key)
            if bits >= MIN_SECRET_BITS:
                continue
            where = "secret" if len(self.keys) == 1 else f"secret #{position + 1}"
            if not insecure_dev_secret:
                raise ConfigurationError(
                    f"{where} is too weak (about {bits:.0f} bits; at least {MIN_SECRET_BITS} are required): "
                    f"{HOW_TO_MAKE_ONE}, or pass insecure_dev_secret=True for local development only"
                )
            logger.warning(
                "coatcheck: %s is weak (insecure_dev_secret=True); never use it in production",
                where,
            )

    @staticmethod
    def _mac(mac: HmacSha256, value: str) -> str:
        return base64.b64encode(mac.digest(value.encode())).decode().rstrip("=")

    def sign_id(self, session_id: str) -> str:
        """The cookie value for an id, byte for byte what express-session sends."""
        mac = self._mac(self._macs[0], session_id)
        if _PLAIN_ID.fullmatch(session_id):  # the same bytes as quote() below, without its cost
            return "s%3A" + session_id + "." + mac.replace("+", "%2B").replace("/", "%2F")
        return quote(f"s:{session_id}.{mac}", safe=_URI_SAFE)

    def unsign_id(self, cookie_value: bytes) -> str | None:
        """The id inside a signed cookie value, or None if it is malformed or forged.

        Every secret is tried in constant time per comparison; nothing here touches a store.
        """
        verified = self.verify_id(cookie_value)
        return None if verified is None else verified[0]

    def verify_id(self, cookie_value: bytes) -> tuple[str, bool] | None:
        """(id, signed with the current secret?) for a valid signed cookie value, else None.
        An id signed with an older secret is re-signed on the next response (rotation)."""
        if len(cookie_value) > MAX_SIGNED_ID:
            return None
        try:
            text = _unquote_signed(cookie_value)
        except (UnicodeDecodeError, ValueError):
            return None
        if not text.startswith("s:"):
            return None
        session_id, dot, mac = text[2:].rpartition(".")
        if not dot or not session_id:
            return None
        expected = mac.encode()
        matches = [hmac.compare_digest(self._mac(key, session_id).encode(), expected) for key in self._macs]
        if not any(matches):
            return None
        return session_id, matches[0]

    def derive(self, purpose: str, length: int = 32) -> list[bytes]:
        """One key per secret for `purpose` (HKDF-SHA256), in keyring order."""
        return [
            HKDF(
                algorithm=hashes.SHA256(),
                length=length,
                salt=None,
                info=f"coatcheck/{purpose}".encode(),
            ).derive(key)
            for key in self.keys
        ]


def _unquote_signed(value: bytes) -> str:
    """`unquote_to_bytes(value).decode("ascii")`, quicker for what `sign_id` sends: a value
    whose only escapes are the %3A, %2B and %2F of "s:" and a base64 signature."""
    if value.startswith(b"s%3A"):
        text = value[4:].decode("ascii")
        if "%" in text:
            text = text.replace("%2B", "+").replace("%2F", "/")
        if "%" not in text:
            return "s:" + text
    return unquote_to_bytes(value).decode("ascii")


def as_secret_list(secret: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """Normalise the `secret` option to a non-empty list of byte strings."""
    items: Sequence[str | bytes] = [secret] if isinstance(secret, str | bytes) else secret
    keys = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    if not keys:
        raise ConfigurationError("secret must be a string, bytes, or a non-empty list of them")
    for key in keys:
        if not key:
            raise ConfigurationError("secret must not be empty")
    return keys


def secret_from_env(name: str = "SESSION_SECRET", *, insecure_dev_secret: bool = False) -> str:
    """The secret in environment variable `name`, checked now: call it at import time so a
    missing, empty or weak secret stops the server at start-up with a ConfigurationError,
    not at its first request (Starlette builds its middleware lazily)."""
    value = os.environ.get(name, "")
    if not value.strip():
        raise ConfigurationError(
            f"the environment variable {name} is {'empty' if name in os.environ else 'not set'}: "
            f'export {name}="$(coatcheck secret)" once and keep it (a .env file, a secret manager)'
        )
    Keyring(value, insecure_dev_secret=insecure_dev_secret)  # refuses a weak one, saying why
    return value
