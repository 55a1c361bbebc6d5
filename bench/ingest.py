"""Ingestion throughput and memory: Runtune's pipeline against a naive one, on the GCS emulator.

    .venv/bin/python -m bench.ingest [--images 2000] [--side 512x384] [--rss-also 8000]

Generates an image-folder zip of JPEGs, stores it in the storage emulator as an upload would be,
and times, each in a fresh child process (so peak RSS is that run's alone):
- `runtune`: download, then `Ingestor.ingest_file` (safe extraction, image checks on a thread pool
  keeping acceptable JPEGs as they came, Parquet shards streamed a row group at a time into
  background uploads, preview pages), on a quarter of the images and on all;
- `naive`: the same per-image work (`normalize_image`), then one object per image, one request
  each, no batching, no parallelism: what storing "a folder of images in a bucket" costs.
Then where the full run's time went (`IngestResult.timings`).
Targets (issue 18): >= 300 images/s on 2 cores, >= 6x the naive baseline, peak RSS flat in N.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

LABELS = ("abyssinian", "beagle", "boxer", "persian", "pug")


def make_archive(path: Path, count: int, size: tuple[int, int]) -> int:
    """A zip of `count` distinct photo-like JPEGs in `label/` folders (stored: JPEGs do not deflate)."""
    rng = random.Random(0)
    base = Image.effect_noise(size, 40).convert("RGB")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(count):
            tint = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
            image = Image.blend(base, tint, 0.5)
            image.paste((i % 256, (i // 256) % 256, 0), (0, 0, 16, 16))  # distinct pixels, so no duplicates
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=85)
            zf.writestr(f"{LABELS[i % len(LABELS)]}/{i:05d}.jpg", out.getvalue())
    return path.stat().st_size


def _blobs() -> Any:
    from runtune.adapters.gcs import GcsBlobStore

    return GcsBlobStore.for_bucket(os.environ["RUNTUNE_PROJECT_ID"], os.environ["RUNTUNE_BUCKET"])


def run_runtune(object_path: str, dataset_id: str, result: Any) -> None:
    from runtune.datasets.limits import DatasetLimits
    from runtune.datasets.pipeline import IngestOptions, Ingestor

    blobs = _blobs()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        local = Path(work) / "in.zip"
        blobs.download_file(object_path, local)
        downloaded = time.perf_counter() - started
        outcome = Ingestor(blobs, "bench", dataset_id, limits=DatasetLimits(), workdir=Path(work)).ingest_file(
            local, "pets.zip", IngestOptions()
        )
    seconds = time.perf_counter() - started
    timings = {"download": downloaded, **outcome.timings, "images kept": outcome.images_kept}
    result.put((outcome.stats["images"], seconds, _peak_rss_mib(), timings))


def run_naive(object_path: str, dataset_id: str, result: Any) -> None:
    from runtune.datasets.images import normalize_image
    from runtune.datasets.problems import Location

    blobs = _blobs()
    started = time.perf_counter()
    count = 0
    with tempfile.TemporaryDirectory() as work:
        local = Path(work) / "in.zip"
        blobs.download_file(object_path, local)
        with zipfile.ZipFile(local) as zf:
            for info in zf.infolist():
                image = normalize_image(zf.read(info), Location(info.filename), max_side=896, max_pixels=50_000_000)
                blobs.upload_bytes(
                    f"users/bench/naive/{dataset_id}/{info.filename}", image.data, content_type="image/jpeg"
                )
                count += 1
    result.put((count, time.perf_counter() - started, _peak_rss_mib(), {}))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _child(target: Any, object_path: str, dataset_id: str) -> tuple[int, float, float, dict[str, float]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(object_path, dataset_id, queue))
    process.start()
    outcome = queue.get(timeout=1800)
    process.join()
    return outcome


def print_breakdown(timings: dict[str, float], images: int) -> None:
    """Where the full run's time went: the calling thread's phases add up to its wall time; the
    image pool's and the upload threads' seconds (summed over threads) overlap them."""
    kept = int(timings.pop("images kept", 0))
    read_and_wait = timings.pop("read + wait for images", 0.0)
    read = timings.get("read", 0.0)
    calling = {
        "download": timings.get("download", 0.0),
        "extract": timings.get("extract", 0.0),
        "read the extracted files": read,
        "wait for the image pool": read_and_wait - read,
        "write shards (encode row groups)": timings.get("write shards", 0.0),
        "write previews": timings.get("write previews", 0.0),
        "finish uploads (wait)": timings.get("finish uploads", 0.0),
    }
    wall = calling["download"] + timings.get("total", 0.0) + calling["extract"]
    calling["other (dedup, stats, splits)"] = wall - sum(calling.values())
    print(f"\nwhere the time went ({images} images, {wall:.2f} s; {kept} of {images} images kept as they came):")
    for phase, seconds in calling.items():
        print(f"  {phase:<36}{seconds:>7.2f} s {100 * seconds / wall:>5.1f}%")
    print("  in parallel threads (summed over threads):")
    print(f"  {'check/keep/re-encode images (pool)':<36}{timings.get('images', 0.0):>7.2f} s")
    print(f"  {'stream shards to the bucket':<36}{timings.get('upload (background)', 0.0):>7.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", default="512x384")
    parser.add_argument(
        "--rss-also",
        type=int,
        default=0,
        metavar="N",
        help="also ingest N images (Runtune only, no baseline: the emulator slows with many objects) to show "
        "peak RSS bounded beyond the default sizes",
    )
    args = parser.parse_args()
    size = tuple(int(v) for v in args.side.split("x"))

    from runtune.dev.emulators import EmulatorPorts, start_emulators

    with tempfile.TemporaryDirectory() as tmp:
        emulators = start_emulators(
            Path(tmp) / "emu", ports=EmulatorPorts.free(), project_id="demo-bench", bucket="bench"
        )
        try:
            os.environ.update(emulators.endpoints.env())
            blobs = _blobs()
            blobs.ensure_bucket()
            rows = []
            for count in (args.images // 4, args.images, *([args.rss_also] if args.rss_also else [])):
                archive = Path(tmp) / f"pets-{count}.zip"
                archive_bytes = make_archive(archive, count, size)  # type: ignore[arg-type]
                object_path = f"users/bench/uploads/{count}/pets.zip"
                blobs.upload_file(object_path, archive)
                rows.append(("runtune", count, archive_bytes, *_child(run_runtune, object_path, f"ds-{count}")))
                if count == args.images:
                    rows.append(("naive", count, archive_bytes, *_child(run_naive, object_path, f"ds-{count}")))
        finally:
            emulators.stop()

    print(f"{'pipeline':<10}{'images':>8}{'archive MiB':>13}{'seconds':>10}{'images/s':>10}{'peak RSS MiB':>14}")
    rates = {}
    timings: dict[str, float] = {}
    for name, count, archive_bytes, done, seconds, rss, phases in rows:
        rate = done / seconds
        rates[(name, count)] = (rate, rss)
        timings = phases if name == "runtune" and count == args.images else timings
        print(f"{name:<10}{count:>8}{archive_bytes / 2**20:>13.1f}{seconds:>10.2f}{rate:>10.1f}{rss:>14.1f}")
    print_breakdown(timings, args.images)
    full, quarter, naive = (
        rates[("runtune", args.images)],
        rates[("runtune", args.images // 4)],
        rates[("naive", args.images)],
    )
    print(f"\nspeed-up over naive: {full[0] / naive[0]:.1f}x  (target >= 6x)")
    print(f"images/s: {full[0]:.0f}  (target >= 300)")
    sizes = f"{args.images // 4} -> {args.images}"
    peaks = f"{quarter[1]:.0f} -> {full[1]:.0f}"
    if args.rss_also:
        sizes, peaks = f"{sizes} -> {args.rss_also}", f"{peaks} -> {rates[('runtune', args.rss_also)][1]:.0f}"
    print(f"peak RSS {sizes} images: {peaks} MiB (flat = bounded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
