"""coatcheck.masking: the token primitives session.py uses, importable without the csrf package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from coatcheck import masking


def test_masking_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(masking.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "masking.py must not import other coatcheck modules"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_every_masked_form_of_a_new_secret_matches_it_and_no_other() -> None:
    secret, other = masking.new_secret(), masking.new_secret()
    assert secret != other and len(secret) >= 43  # 256 bits, base64url
    masked = {masking.mask_token(secret) for _ in range(20)}
    assert len(masked) == 20  # a fresh pad on every call
    assert all(masking.tokens_match(secret, token) for token in masked)
    assert not any(masking.tokens_match(other, token) for token in masked)
    assert not masking.tokens_match(secret, secret)  # the raw secret is not a masked token
