"""Input formats by name and by file name: the built-in ones are registered as a new one would be."""

from __future__ import annotations

from chunkpilot.errors import ConfigError
from chunkpilot.formats.base import InputFormat, PlannedChunks, Record, units_before, units_between
from chunkpilot.formats.delimited import DelimitedFormat
from chunkpilot.formats.jsonl import JsonlFormat
from chunkpilot.formats.parquet import ParquetFormat

_FORMATS: dict[str, InputFormat] = {}


def register_format(fmt: InputFormat) -> None:
    _FORMATS[fmt.name] = fmt


def get_format(name: str) -> InputFormat:
    try:
        return _FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown input format {name!r}: this chunkpilot reads {', '.join(sorted(_FORMATS))}") from None


def format_of(filename: str) -> InputFormat | None:
    """The format whose suffixes ``filename`` ends with (case-insensitive), if any."""
    lower = filename.lower()
    return next((f for f in _FORMATS.values() if lower.endswith(f.suffixes)), None)


def data_suffixes() -> tuple[str, ...]:
    return tuple(s for f in _FORMATS.values() for s in f.suffixes)


def described_suffixes(glob: bool = False) -> str:
    """The data file names, for people: ``.jsonl/.json/…`` without listing every compressed variant."""
    from chunkpilot.formats.compressed import COMPRESSED_SUFFIXES

    plain = [("*" if glob else "") + s for s in data_suffixes() if not s.endswith(COMPRESSED_SUFFIXES)]
    compressed = sorted({c for s in data_suffixes() for c in COMPRESSED_SUFFIXES if s.endswith(c)},
                        key=COMPRESSED_SUFFIXES.index)
    return "/".join(plain) + (f" (each may end {'/'.join(compressed)})" if compressed else "")


register_format(JsonlFormat())
register_format(ParquetFormat())
register_format(DelimitedFormat("csv", ",", (".csv",)))
register_format(DelimitedFormat("tsv", "\t", (".tsv", ".tab")))

__all__ = ["InputFormat", "PlannedChunks", "Record", "units_before", "units_between", "register_format",
           "get_format", "format_of", "data_suffixes", "described_suffixes"]
