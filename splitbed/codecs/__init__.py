"""Feature codecs behind one interface and one wire format.

Codecs are found by name with parameters (get_codec), turn a tensor into one self-describing wire
message (wire.py) and back (decode). base.py holds the interface and registry, simple.py the
baselines (raw fp32, zstd, int8, JPEG tiles), disc.py our training-free DISC with its calibration;
evaluation.py and criteria.py measure a codec's size, time and accuracy loss (three criteria).
May import: models (the command line only), host, registry, errors.
"""

from splitbed.codecs import disc, simple  # noqa: F401  (registers the codecs)
from splitbed.codecs.base import REGISTRY, Codec, CorruptPayload, decode, get_codec
from splitbed.codecs.disc_calibration import Calibration, CalibrationStore
from splitbed.codecs.wire import WireFormatError

__all__ = ["REGISTRY", "Calibration", "CalibrationStore", "Codec", "CorruptPayload", "WireFormatError",
           "decode", "get_codec"]
