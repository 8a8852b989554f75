"""The ``LineBuilder`` class the processing engine injects into plugins.

InfluxDB 3 Core runs the source of its ``LineBuilder`` (influxdb3_py_api/src/line_builder/) in
``__main__`` before each plugin execution and sets ``builtins.LineBuilder``; its exception classes
exist only in that ``__main__``. This module holds our own implementation of the same behaviour
(processing reference §4) as source text, so the runtime can exec it the same way:

* ``LineBuilder(measurement)``: a space in the name raises
  ``InvalidMeasurementError("Measurement name cannot contain spaces")``; empty names pass;
* tag and field keys: ``InvalidKeyError`` with ``<tag|field> key cannot be empty`` or
  ``<kind> key '<k>' cannot contain spaces|commas|equals signs`` (checked in that order);
* escaping: measurement ``,`` and space; tag values and field keys ``\\`` ``,`` ``=`` space;
  tag keys are validated, not escaped; strings escape ``\\`` then ``"`` and are quoted;
* ``float64_field`` renders whole numbers as ``<int>.0`` else ``str(v)``; ``int64_field`` renders
  ``<v>i`` unchecked; ``uint64_field`` rejects negatives with
  ``ValueError("uint64 field '<k>' cannot be negative")``; ``bool_field`` renders ``t``/``f``;
* ``build()`` without fields raises ``InvalidLineError("At least one field is required: <line>")``.
"""

from __future__ import annotations

LINEBUILDER_SOURCE = '''
from collections import OrderedDict


class InfluxDBError(Exception):
    """Base class of the LineBuilder errors."""


class InvalidMeasurementError(InfluxDBError):
    """The measurement name is not usable."""


class InvalidKeyError(InfluxDBError):
    """A tag or field key is not usable."""


class InvalidLineError(InfluxDBError):
    """The line cannot be built (no fields)."""


_MEASUREMENT_ESCAPES = str.maketrans({",": "\\\\,", " ": "\\\\ "})
_NAME_ESCAPES = str.maketrans({"\\\\": "\\\\\\\\", ",": "\\\\,", "=": "\\\\=", " ": "\\\\ "})
_KEY_RULES = ((" ", "spaces"), (",", "commas"), ("=", "equals signs"))


class LineBuilder:
    """Builds one line of line protocol: measurement, tags, fields, optional timestamp."""

    def __init__(self, measurement):
        if " " in measurement:
            raise InvalidMeasurementError("Measurement name cannot contain spaces")
        self.measurement = measurement
        self.tags = OrderedDict()
        self.fields = OrderedDict()
        self._timestamp_ns = None

    @staticmethod
    def _check_key(key, kind):
        if not key:
            raise InvalidKeyError(kind + " key cannot be empty")
        for char, name in _KEY_RULES:
            if char in key:
                raise InvalidKeyError(kind + " key '" + str(key) + "' cannot contain " + name)

    def tag(self, key, value):
        self._check_key(key, "tag")
        self.tags[key] = str(value)
        return self

    def int64_field(self, key, value):
        self._check_key(key, "field")
        self.fields[key] = f"{value}i"
        return self

    def uint64_field(self, key, value):
        self._check_key(key, "field")
        if value < 0:
            raise ValueError(f"uint64 field '{key}' cannot be negative")
        self.fields[key] = f"{value}u"
        return self

    def float64_field(self, key, value):
        self._check_key(key, "field")
        if value % 1 == 0:
            self.fields[key] = f"{int(value)}.0"
        else:
            self.fields[key] = str(value)
        return self

    def string_field(self, key, value):
        self._check_key(key, "field")
        quoted = value.replace("\\\\", "\\\\\\\\").replace('"', '\\\\"')
        self.fields[key] = '"' + quoted + '"'
        return self

    def bool_field(self, key, value):
        self._check_key(key, "field")
        self.fields[key] = "t" if value else "f"
        return self

    def time_ns(self, timestamp_ns):
        self._timestamp_ns = timestamp_ns
        return self

    def build(self):
        head = self.measurement.translate(_MEASUREMENT_ESCAPES)
        for key, value in self.tags.items():
            head += "," + key + "=" + value.translate(_NAME_ESCAPES)
        if not self.fields:
            raise InvalidLineError("At least one field is required: " + head)
        body = ",".join(key.translate(_NAME_ESCAPES) + "=" + text for key, text in self.fields.items())
        line = head + " " + body
        if self._timestamp_ns is not None:
            line += " " + str(self._timestamp_ns)
        return line
'''

_CODE = compile(LINEBUILDER_SOURCE, "<LineBuilder>", "exec")


def make_linebuilder_namespace() -> dict[str, object]:
    """Exec the source in a fresh ``__main__``-like dict and return that dict (class + errors)."""
    namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(_CODE, namespace)
    return namespace


def make_linebuilder() -> type:
    """A freshly created ``LineBuilder`` class, as the engine creates one per execution."""
    cls = make_linebuilder_namespace()["LineBuilder"]
    assert isinstance(cls, type)
    return cls
