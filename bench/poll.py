"""200 clients polling their jobs' status through the gateway, as the web UI and scripts do.

Starts the local platform on free ports, signs up 200 users, gives each a running job (written
straight to Firestore: this measures reads, not launches), then every client polls
`GET /v1/fine_tuning/jobs/{id}` once a second for 60 s on its own keep-alive connection.
Prints requests/s, p50/p99 latency and the error count (target: zero errors).

    .venv/bin/python -m bench.poll [--clients 200] [--seconds 60] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.loadgen import run_clients
from runtune.dev.platform import LocalPlatform, PlatformConfig, PlatformPorts
from runtune.firebase_rest import FirebaseAuthRest
from runtune.schemas.common import new_id
from runtune.schemas.jobs import Job, JobStatus, job_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between one client's polls")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runtune-bench-") as tmp:
        platform = LocalPlatform(
            PlatformConfig(
                local_dir=Path(tmp), ports=PlatformPorts.free(), project_id="demo-runtune-poll", demo_content=False
            )
        )
        print("starting the local platform...", flush=True)
        state = platform.start()
        try:
            assert platform.emulators is not None
            os.environ.update(platform.emulators.endpoints.env())
            from runtune.adapters.firestore import FirestoreMetadataStore

            store = FirestoreMetadataStore.for_project(state["project_id"])
            auth = FirebaseAuthRest("bench", emulator_host=state["auth_emulator_host"])

            def client(i: int) -> tuple[str, dict[str, str]]:
                session = auth.sign_up(f"poller-{i}@example.com", "bench-password")
                job = Job(
                    id=new_id("ftjob"),
                    owner=session.uid,
                    model="tiny-gemma-3-vision",
                    training_file=new_id("file"),
                    status=JobStatus.running,
                    total_steps=1000,
                    steps_completed=i,
                )
                store.set(job_path(job.id), job.to_document())
                return f"{state['gateway_url']}/v1/fine_tuning/jobs/{job.id}", {
                    "authorization": f"Bearer {session.id_token}"
                }

            print(f"creating {args.clients} users and jobs...", flush=True)
            with ThreadPoolExecutor(8) as pool:
                targets = list(pool.map(client, range(args.clients)))
            print(f"polling for {args.seconds:.0f}s...", flush=True)
            result = run_clients(targets, seconds=args.seconds, interval_s=args.interval)
        finally:
            platform.stop()

    print(f"\nclients {args.clients}, one poll each every {args.interval}s for {args.seconds:.0f}s")
    print(f"requests {result.requests}  errors {result.errors}  req/s {result.rps:.0f}")
    print(f"latency p50 {result.p50:.1f} ms  p99 {result.p99:.1f} ms")
    print(f"target zero errors: {'met' if result.errors == 0 else 'MISSED'}")


if __name__ == "__main__":
    main()
