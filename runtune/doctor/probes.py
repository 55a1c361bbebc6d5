"""HTTP probes shared by the local and the cloud checks: health, privacy, the engine's models."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from runtune.doctor import Check

DEFAULT_TIMEOUT_S = 10.0
# A private service refuses a request without the internal credential with 401 (no or bad credential)
# or 403; Cloud Run itself answers 403 (IAM) or 404 (internal-only ingress, seen from the internet).
REFUSED = frozenset({401, 403})
REFUSED_BY_CLOUD_RUN = frozenset({401, 403, 404})


def _get(url: str, headers: dict[str, str] | None, timeout_s: float) -> httpx.Response:
    # No redirects: a login page or a load balancer's redirect must not count as an answer.
    return httpx.get(url, headers=headers, timeout=timeout_s, follow_redirects=False)


def _answered(
    name: str, url: str, fix: str, headers: dict[str, str] | None, timeout_s: float
) -> httpx.Response | Check:
    """`url`'s 2xx answer, or the failed check that says why there is none."""
    try:
        response = _get(url, headers, timeout_s)
    except httpx.HTTPError as exc:
        return Check.failed(name, f"{url} is not reachable ({type(exc).__name__})", fix)
    if not response.is_success:
        return Check.failed(name, f"{url} answered {response.status_code}", fix)
    return response


def healthy(
    name: str, base_url: str, fix: str, *, path: str = "/healthz", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Check:
    """The component answers its health path with a 2xx."""
    url = f"{base_url.rstrip('/')}{path}"
    response = _answered(name, url, fix, None, timeout_s)
    if isinstance(response, Check):
        return response
    return Check.passed(name, f"{url} answers {response.status_code}")


def refuses_anonymous(
    name: str,
    base_url: str,
    fix: str,
    *,
    path: str = "/v1/me",
    refused: Iterable[int] = REFUSED,
    unreachable_is_refused: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Check:
    """A request without any credential to a protected path is refused.

    `unreachable_is_refused`: in the cloud a connection that fails is as private as a refusal; locally
    it means the component is down, and privacy cannot be told."""
    url = f"{base_url.rstrip('/')}{path}"
    refused = frozenset(refused)
    try:
        response = _get(url, None, timeout_s)
    except httpx.HTTPError as exc:
        if unreachable_is_refused:
            return Check.passed(name, f"{url} is not reachable from here ({type(exc).__name__})")
        return Check.failed(name, f"{url} is not reachable ({type(exc).__name__}): privacy unknown", fix)
    if response.status_code in refused:
        return Check.passed(name, f"an unauthenticated GET {path} is refused ({response.status_code})")
    return Check.failed(
        name, f"an unauthenticated GET {path} answered {response.status_code}; expected one of {sorted(refused)}", fix
    )


def engine_serves(
    name: str,
    base_url: str,
    expected: Iterable[str],
    fix: str,
    *,
    authorization: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Check:
    """The engine's `GET /v1/models` (OpenAI-compatible: vLLM and the local engine) lists every base."""
    url = f"{base_url.rstrip('/')}/v1/models"
    headers = {"authorization": authorization} if authorization else None
    response = _answered(name, url, fix, headers, timeout_s)
    if isinstance(response, Check):
        return response
    try:
        served = {str(model["id"]) for model in response.json()["data"]}
    except (ValueError, KeyError, TypeError):
        return Check.failed(name, f"{url} did not answer an OpenAI model list", fix)
    wanted = sorted(set(expected))
    missing = [model for model in wanted if model not in served]
    if missing:
        return Check.failed(
            name,
            f"the engine does not serve {', '.join(missing)} (it serves {', '.join(sorted(served)) or 'nothing'})",
            fix,
        )
    return Check.passed(name, f"serves {', '.join(wanted)}")
