from gateway.ratelimit import RateLimiter, retry_after_header
from gateway.routes import ROUTE_TABLE, upstream_for


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
