"""The data layer: joint YOLO reader and validation, synthetic frames, group splits, decoded cache, batches.

Entry points: :func:`load_data` (a DataConfig -> :class:`DecodedData`) and :func:`iterate_batches`.
Bad input raises :class:`DataError`, whose message is one line per problem.
"""

from trainables.data.errors import DataError
from trainables.data.loader import iterate_batches, load_data, load_dataset
from trainables.data.types import DecodedData

__all__ = ["DataError", "DecodedData", "iterate_batches", "load_data", "load_dataset"]
