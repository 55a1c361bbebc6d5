from starlette.requests import Request

from gateway.proxy import upstream_headers
from gateway.ratelimit import RateLimiter, retry_after_header
from gateway.routes import ROUTE_TABLE, upstream_for
from runtune.ports.identity import Identity

# What a client (or a proxy in front of the gateway) may send that says who called or from where.
SPOOFED = {
    "forwarded": "for=10.0.0.1;host=internal;proto=https",
    "x-forwarded-for": "10.0.0.1",
    "x-forwarded-host": "runtune-training.internal",
    "x-forwarded-proto": "http",
    "x-forwarded-prefix": "/admin",
    "x-real-ip": "127.0.0.1",
    "x-serverless-authorization": "Bearer stolen",
    "x-user-id": "someone-else",
    "x-user-email": "evil@example.com",
    "x-user-role": "admin",
    "x-user-email-verified": "true",
    "x-runtune-auth": "id_token",
    "x-goog-authenticated-user-email": "accounts.google.com:evil@example.com",
    "x-goog-iap-jwt-assertion": "forged",
    "x-http-method-override": "DELETE",
    "x-original-url": "/v1/secrets",
    "authorization": "Bearer the-users-firebase-token",
    "cookie": "session=1",
    "x-request-id": "chosen-by-client",
}


def test_route_table_picks_the_owning_service() -> None:
    assert upstream_for("/v1/files") == "preprocessing"
    assert upstream_for("/v1/datasets/ds-1/samples") == "preprocessing"
    assert upstream_for("/v1/fine_tuning/jobs/ftjob-1/events") == "training"
    assert upstream_for("/v1/chat/completions") == "inference"
    assert upstream_for("/v1/me") == "training"
    # The list is the training service's; one model (retrieve, delete) the inference service's.
    assert upstream_for("/v1/models") == "training"
    assert upstream_for("/v1/models/ft:tiny-gemma-3-vision:ftjob-1") == "inference"
    assert upstream_for("/v1/models/google/gemma-3-4b-it") == "inference"


def test_route_table_does_not_match_partial_segments() -> None:
    assert upstream_for("/v1/filesystem") is None
    assert upstream_for("/v1") is None
    assert upstream_for("/v1/modelsx") is None
    assert upstream_for("/admin") is None


def test_every_route_names_a_known_service() -> None:
    assert set(ROUTE_TABLE.values()) == {"preprocessing", "training", "inference"}


def test_rate_limiter_allows_a_burst_then_waits() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    assert [limiter.acquire("u", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("u", now=100.0)
    assert 0.9 < wait <= 1.0
    assert retry_after_header(wait) == "1"
    # One token a second refills.
    assert limiter.acquire("u", now=101.01) == 0.0


def test_rate_limiter_keeps_users_apart() -> None:
    limiter = RateLimiter(per_minute=60, burst=1)
    assert limiter.acquire("a", now=0.0) == 0.0
    assert limiter.acquire("a", now=0.0) > 0
    assert limiter.acquire("b", now=0.0) == 0.0


def test_forwarding_identity_and_serverless_headers_never_go_upstream() -> None:
    kept = {"content-type": "application/json", "idempotency-key": "k-1", "last-event-id": "7", "accept": "*/*"}
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/me",
        "headers": [(k.encode(), v.encode()) for k, v in (SPOOFED | kept).items()],
    }
    headers = upstream_headers(Request(scope), Identity("u-1", "u@example.com", 0.0), "Bearer internal", "rid-12345")
    assert sorted(headers) == sorted(
        [
            *kept.items(),
            ("authorization", "Bearer internal"),
            ("x-user-id", "u-1"),
            ("x-user-email", "u@example.com"),
            ("x-user-email-verified", "false"),
            ("x-runtune-auth", "id_token"),
            ("x-request-id", "rid-12345"),
        ]
    )
