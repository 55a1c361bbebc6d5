"""The local emulators' addresses, as the local profile's settings tests set them (the `clean_env`
fixture, tests/unit/conftest.py, clears them first)."""

from __future__ import annotations

EMULATORS = {
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8090",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023",
    "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
    "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:8123",
}
