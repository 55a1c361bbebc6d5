"""Errors about a user's data that say what is wrong and where: file, row (or line), field."""

from __future__ import annotations

from dataclasses import dataclass, replace

from runtune.errors import Unprocessable


@dataclass(frozen=True)
class Location:
    """Where in the input something is: `data.jsonl, line 3, field 'messages[0].content'`."""

    file: str
    row: int | None = None
    field: str | None = None
    row_word: str = "row"

    def at(self, *, row: int | None = None, field: str | None = None) -> Location:
        return replace(self, row=row if row is not None else self.row, field=field if field is not None else self.field)

    def describe(self) -> str:
        parts = [self.file]
        if self.row is not None:
            parts.append(f"{self.row_word} {self.row}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)


class DataError(Unprocessable):
    """Bad input data. Rendered as a 422 when found while a request is answered, or stored as the
    `error` of a `failed` dataset when found in the background."""

    def __init__(self, message: str, where: Location | None = None, *, code: str = "invalid_data") -> None:
        text = f"{where.describe()}: {message}" if where else message
        super().__init__(text, param=where.field if where else None, code=code)
        self.where = where
        self.reason = message
