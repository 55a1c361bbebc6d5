"""Ingestion limits and defaults, read from `RUNTUNE_DATASET_*` variables.

Kept next to the ingestion code rather than in `ServiceSettings`: the library itself (tests, the
bench, a future batch job) applies them, not only the preprocessing service.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatasetLimits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNTUNE_DATASET_", extra="ignore", frozen=True)

    # One upload (a file, an archive); larger inputs belong in several uploads or on the Hub.
    max_upload_bytes: int = Field(default=10 * 1024**3, ge=1)
    # Cloud Run refuses request bodies over 32 MiB, so the direct (multipart) path stops there.
    max_direct_upload_bytes: int = Field(default=32 * 1024**2, ge=1)
    # Decoded pixels per image: above this a file is treated as a decompression bomb.
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    max_image_file_bytes: int = Field(default=50 * 1024**2, ge=1)
    # Archives: total bytes once extracted, entries, and extracted/compressed ratio (zip bombs).
    max_extracted_bytes: int = Field(default=20 * 1024**3, ge=1)
    max_archive_entries: int = Field(default=1_000_000, ge=1)
    max_expansion_ratio: float = Field(default=100.0, ge=1)
    # Tar metadata (GNU long names and links, pax headers) is read whole by `tarfile`: each is capped.
    max_tar_header_bytes: int = Field(default=64 * 1024, ge=512)
    # A zip's central directory is parsed whole by `zipfile`: its declared size is capped first.
    max_zip_directory_bytes: int = Field(default=256 * 1024**2, ge=1024)
    # A JSON array is parsed whole, so it is capped; JSONL streams, one bounded line at a time.
    max_json_array_bytes: int = Field(default=64 * 1024**2, ge=1)
    # One JSONL line: room for a chat with a full-size image as a base64 data URL.
    max_line_bytes: int = Field(default=64 * 1024**2, ge=1024)
    # One CSV/TSV record (all its lines); each field is also capped at 128 KiB (`tables.CSV_FIELD_CHARS`).
    max_csv_row_bytes: int = Field(default=4 * 1024**2, ge=1024)
    # Parquet: one row group decompressed, as the file's metadata declares it, and its compression ratio.
    max_parquet_row_group_bytes: int = Field(default=1024**3, ge=1024)
    # De-duplication keeps an 8-byte hash per row for this many rows (about 64 MiB), then stops.
    max_dedup_rows: int = Field(default=1_000_000, ge=1)
    # Hub imports: bytes of the data files to be read, and seconds of reading in all.
    max_hub_bytes: int = Field(default=10 * 1024**3, ge=1)
    max_hub_seconds: float = Field(default=1800.0, gt=0)
    max_labels: int = Field(default=1_000, ge=2)
    # Processing in the service: images normalised in parallel, a bounded window in flight.
    workers: int = Field(default=2, ge=1, le=64)
