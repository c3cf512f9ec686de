"""Text datasets read as a stream, row by row: a hub dataset by name (with its subset, split,
text field and revision), or local .jsonl/.json/.parquet/.txt/.csv files, both through
`datasets`' streaming readers, so nothing is held whole in memory and every node reads the same
rows in the same order."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text", ".csv": "csv"}
MAX_DOCUMENT_CHARS = 1_000_000  # a longer row is read as pieces of this size (bounded tokenizer input)
MAX_LOCAL_FILES = 100_000


class DatasetError(ValueError):
    """A dataset that cannot be read as text (said in one line, naming the dataset)."""


@dataclass(frozen=True)
class DatasetSource:
    """`name`: a hub id ("HuggingFaceFW/fineweb-edu"), a local file, or a folder of local files
    of one kind. `subset`: the hub config ("sample-10BT"). `revision`: a hub commit or tag (pin it:
    every node must read the same rows)."""

    name: str
    subset: str = ""
    split: str = "train"
    text_field: str = "text"
    revision: str = ""

    def is_repository(self) -> bool:
        """A hub id, or a local copy of a dataset repository (a folder with a README.md dataset
        card declaring its subsets): read by `datasets.load_dataset(name, subset, ...)`."""
        path = Path(self.name).expanduser()
        return not path.exists() or (path.is_dir() and (path / "README.md").is_file())

    def local_files(self) -> list[Path] | None:
        """The local files this source reads, sorted; None for a hub dataset."""
        path = Path(self.name).expanduser()
        if path.is_dir() and self.is_repository():
            return sorted(p.resolve() for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_BUILDERS)
            if not files:
                raise DatasetError(f"{path} holds no {'/'.join(LOCAL_BUILDERS)} files")
            if len(files) > MAX_LOCAL_FILES:
                raise DatasetError(f"{path} holds {len(files)} files, more than {MAX_LOCAL_FILES}")
        else:
            return None
        kinds = {LOCAL_BUILDERS.get(p.suffix.lower()) for p in files}
        if None in kinds or len(kinds) != 1:
            raise DatasetError(f"{self.name}: local files must all be one of {', '.join(LOCAL_BUILDERS)} "
                               f"(found {', '.join(sorted({p.suffix for p in files}))})")
        return [p.resolve() for p in files]

    def identity(self) -> str:
        """What the page cache is keyed by: the settings, and for local files their names, sizes
        and modification times (an edited file is read again)."""
        files = self.local_files()
        fields = asdict(self)
        if files is not None:
            fields["files"] = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def __str__(self) -> str:
        parts = [self.name] + [f"{k}={v}" for k, v in (("subset", self.subset), ("revision", self.revision)) if v]
        return " ".join(parts + [f"split={self.split}", f"field={self.text_field}"])


def _open_stream(source: DatasetSource):
    import datasets  # heavy import, only when a dataset is read

    try:
        if not source.is_repository():
            files = source.local_files()
            builder = LOCAL_BUILDERS[files[0].suffix.lower()]
            extra = {"sample_by": "paragraph"} if builder == "text" else {}  # a .txt row is a paragraph, not a line
            return datasets.load_dataset(builder, data_files={source.split: [str(p) for p in files]},
                                         split=source.split, streaming=True, **extra)
        return datasets.load_dataset(source.name, source.subset or None, split=source.split,
                                     revision=source.revision or None, streaming=True)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise DatasetError(f"dataset {source} cannot be opened: {exc}") from exc


def stream_documents(source: DatasetSource) -> Iterator[str]:
    """The text of each row in order (empty rows skipped; a row longer than MAX_DOCUMENT_CHARS
    in pieces). A row without the text field, or with a non-text value there, is refused."""
    rows, read = iter(_open_stream(source)), 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a damaged file or a failed download: one line naming the dataset
            raise DatasetError(f"dataset {source}: reading failed after {read:,} rows: "
                               f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        read += 1
        if not isinstance(row, dict) or source.text_field not in row:
            raise DatasetError(f"dataset {source}: a row has no text field {source.text_field!r} "
                               f"(fields: {sorted(row)[:20] if isinstance(row, dict) else type(row).__name__})")
        value = row[source.text_field]
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise DatasetError(f"dataset {source}: field {source.text_field!r} holds {type(value).__name__}, not text")
        for start in range(0, len(value), MAX_DOCUMENT_CHARS):
            yield value[start:start + MAX_DOCUMENT_CHARS]
