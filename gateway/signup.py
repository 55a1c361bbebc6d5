"""The sign-up policy: which verified Firebase identities may use the platform.

Firebase Auth lets anyone holding the project's public web API key create an email account, so a
valid ID token proves only that someone signed up. The gateway checks every verified identity
against the policy of `RUNTUNE_SIGNUP_POLICY` (`open`, `domains` or `invite`) before anything is
forwarded; a refusal is a 403 envelope saying why. The check runs on every request, not once at
sign-up, so narrowing the policy takes effect at once for accounts that already exist.

`domains` and `invite` trust an email address only when Firebase has verified it (the
`email_verified` claim): an unverified account can carry any address.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtune.errors import PermissionDenied
from runtune.ports.identity import Identity
from runtune.settings import GatewaySettings, SignupPolicy


@dataclass(frozen=True)
class SignupRule:
    policy: SignupPolicy
    domains: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> SignupRule:
        return cls(
            policy=settings.signup,
            domains=frozenset(domain.strip().lower() for domain in settings.signup_allowed_domains),
            emails=frozenset(email.strip().lower() for email in settings.signup_invited_emails),
        )

    def check(self, identity: Identity) -> None:
        """Raises `PermissionDenied` (403) unless the policy admits this identity."""
        if self.policy is SignupPolicy.open:
            return
        email = (identity.email or "").strip().lower()
        if not email:
            raise PermissionDenied(
                "This deployment admits only accounts with a verified email address; this account has none",
                code="email_required",
            )
        if not identity.email_verified:
            raise PermissionDenied(
                f"Verify your email address {email} first: open the link of the verification email, then sign in again",
                code="email_not_verified",
            )
        if self.policy is SignupPolicy.domains:
            domain = email.rpartition("@")[2]
            if domain not in self.domains:
                allowed = ", ".join(sorted(self.domains))
                raise PermissionDenied(
                    f"This deployment admits only email addresses at {allowed}; {email} is not one of them",
                    code="signup_domain_not_allowed",
                )
        elif email not in self.emails:
            raise PermissionDenied(
                f"This deployment is invitation only and {email} is not invited: ask its operator for an invitation",
                code="signup_not_invited",
            )
