"""An issuer's name is one issuer's for good: a token's principal is `jwt:<name>:<sub>`,
so a name removed and added again for another issuer (another identity provider) made
that provider's subjects the principals the first one's were: the owners of their
functions, the readers of their async invocations and results. Added again for the same
issuer it is the same people, and allowed."""

from __future__ import annotations

from typing import Any

from harness import LiveNode
from jwt_support import SigningKey, jwks


def _issuer(name: str, url: str, signing: SigningKey) -> dict[str, Any]:
    return {
        "name": name,
        "issuer": url,
        "audience": "donjon",
        "jwks": jwks(signing),
        "allowed_roles": ["developer"],
    }


def test_an_issuer_name_is_not_given_to_another_issuer(node: LiveNode) -> None:
    signing = SigningKey.generate("reuse-1", "ES256")
    first = _issuer("atk-reuse", "https://first-idp.example", signing)
    other = _issuer("atk-reuse", "https://other-idp.example", signing)
    with node.client() as c:
        assert c.post("/v1/issuers", json=first).status_code == 201
        assert c.delete("/v1/issuers/atk-reuse").status_code in (200, 204)
        refused = c.post("/v1/issuers", json=other)
        assert refused.status_code == 409, refused.text
        assert "https://first-idp.example" in refused.json()["detail"]
        names = [i["name"] for i in c.get("/v1/issuers").json()]
        assert "atk-reuse" not in names  # nothing added
        # The same issuer again: its subjects are the same people.
        assert c.post("/v1/issuers", json=first).status_code == 201
        assert c.delete("/v1/issuers/atk-reuse").status_code in (200, 204)
