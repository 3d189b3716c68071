"""The account a provider job is billed to, named without its secret: one rule for every provider.

The id goes into submit cache keys, claims and ledger records, so it must never change for an
existing block: a new id would make a rerun miss its cached job and pay again.
"""

from __future__ import annotations

import hashlib

#: The key-hash prefix of providers that name no prefix of their own (OpenAI, chat completions).
KEY_HASH_PREFIX = "key-sha256-"


def account_id_for(
    api_key: str,
    *,
    prefix: str = KEY_HASH_PREFIX,
    label: str | None = None,
    organization: str | None = None,
    project: str | None = None,
) -> str:
    """A non-secret account identity: the label, else organization/project, else ``prefix`` + a key hash.

    The hash is the first 12 hex digits of the key's sha256: a one-way digest of a high-entropy key
    (48 bits of it cannot be turned back into the key), which identifies the key without revealing it.

    Example:
        ```python
        account_id_for("sk-...", label="team-a")         # "team-a"
        account_id_for("sk-...", prefix="scenario-")    # "scenario-" + 12 hex digits
        ```
    """
    if label:
        return label
    if organization or project:
        return "/".join(part for part in (organization, project) if part)
    return prefix + hashlib.sha256(api_key.encode()).hexdigest()[:12]
