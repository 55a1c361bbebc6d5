"""How much the gateway costs: the same request sent straight to a service and through the gateway.

Starts the local platform on free ports, signs a user up, then for 1 and 64 concurrent keep-alive
connections measures `GET /v1/me` direct to the training service (with the gateway's internal
credential, as the gateway would send it) and through the gateway (with the user's ID token).
Prints p50/p99 latency, requests/s, and the ratios the targets are about:
  - the gateway adds at most 3 ms at p50 (1 connection);
  - it keeps at least half the direct throughput at 64 connections.

    .venv/bin/python -m bench.gateway [--seconds 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.loadgen import LoadResult, run_load
from runtune.dev.platform import LocalPlatform, PlatformConfig, PlatformPorts
from runtune.firebase_rest import FirebaseAuthRest

TARGET_ADDED_P50_MS = 3.0
TARGET_THROUGHPUT_RATIO = 0.5


def _row(label: str, result: LoadResult) -> str:
    return (
        f"{label:<24} {result.requests:>8} {result.errors:>6} {result.rps:>10.0f} {result.p50:>9.2f} {result.p99:>9.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runtune-bench-") as tmp:
        config = PlatformConfig(
            local_dir=Path(tmp),
            ports=PlatformPorts.free(),
            project_id="demo-runtune-bench",
            demo_content=False,
            # The benchmark must measure the proxy, not the rate limiter's refusals.
            gateway_env={"RUNTUNE_RATE_LIMIT_PER_MINUTE": "100000000", "RUNTUNE_RATE_LIMIT_BURST": "1000000"},
        )
        platform = LocalPlatform(config)
        print("starting the local platform...", flush=True)
        state = platform.start()
        try:
            session = FirebaseAuthRest("bench", emulator_host=state["auth_emulator_host"]).sign_up(
                "bench@example.com", "bench-password"
            )
            direct_url = f"{state['services']['training']}/v1/me"
            direct_headers = {"authorization": f"Bearer {platform.internal_token}", "x-user-id": session.uid}
            gateway_url = f"{state['gateway_url']}/v1/me"
            gateway_headers = {"authorization": f"Bearer {session.id_token}"}
            # Warm both paths (token cache, connection pools) before measuring.
            run_load(direct_url, direct_headers, connections=4, seconds=1)
            run_load(gateway_url, gateway_headers, connections=4, seconds=1)

            results: dict[tuple[str, int], LoadResult] = {}
            for connections in (1, 64):
                for label, url, headers in (
                    ("direct", direct_url, direct_headers),
                    ("gateway", gateway_url, gateway_headers),
                ):
                    results[(label, connections)] = run_load(
                        url, headers, connections=connections, seconds=args.seconds
                    )
        finally:
            platform.stop()

    print(f"\n{'path':<24} {'requests':>8} {'errors':>6} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for (label, connections), result in results.items():
        print(_row(f"{label} x{connections}", result))
    added_p50 = results[("gateway", 1)].p50 - results[("direct", 1)].p50
    ratio_64 = results[("gateway", 64)].rps / results[("direct", 64)].rps
    print(
        f"\ngateway adds {added_p50:.2f} ms at p50 with 1 connection "
        f"(target <= {TARGET_ADDED_P50_MS} ms): {'met' if added_p50 <= TARGET_ADDED_P50_MS else 'MISSED'}"
    )
    print(
        f"gateway keeps {ratio_64:.2f}x the direct throughput at 64 connections "
        f"(target >= {TARGET_THROUGHPUT_RATIO}): {'met' if ratio_64 >= TARGET_THROUGHPUT_RATIO else 'MISSED'}"
    )
    errors = sum(result.errors for result in results.values())
    print(f"errors: {errors}")


if __name__ == "__main__":
    main()
