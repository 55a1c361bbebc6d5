"""Runs `gcloud-tasks-emulator` on loopback only (run by the emulator's own interpreter, not Runtune's).

The emulator binds its gRPC port on every interface (`[::]`); anyone on the network could then queue
tasks that it POSTs anywhere from this machine. This starts the same server bound to 127.0.0.1.
Standalone: it imports nothing of Runtune (its virtual environment has only the emulator).

    python tasks_emulator.py PORT QUEUE_NAME
"""

import logging
import sys
import time
from concurrent import futures

import grpc
from gcloud_tasks_emulator import server
from gcloud_tasks_emulator.cloudtasks_pb2_grpc import add_CloudTasksServicer_to_server


def _run_on_loopback(self: server.APIThread) -> None:
    self._httpd = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_CloudTasksServicer_to_server(server.Greeter(self._state), self._httpd)
    self._httpd.add_insecure_port(f"127.0.0.1:{self._port}")
    self._httpd.start()
    self._is_running.set()
    while self._is_running.is_set():
        time.sleep(0.1)


def main() -> None:
    port, queue = int(sys.argv[1]), sys.argv[2]
    logging.basicConfig(level=logging.WARNING)
    server.APIThread.run = _run_on_loopback  # type: ignore[method-assign]
    emulator = server.create_server("127.0.0.1", port, default_queue_names=[queue])
    emulator.run()


if __name__ == "__main__":
    main()
