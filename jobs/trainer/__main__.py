"""`python -m jobs.trainer <job_id>`: the container's entrypoint, identical under the local launcher
and as a Cloud Run Job task."""

from __future__ import annotations

import sys

from jobs.trainer.recipe import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
