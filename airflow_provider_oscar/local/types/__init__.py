"""The embedded OSCAR's data, mirroring grycap/oscar ``pkg/types`` one Go file per module.

Each dataclass is a Go struct: fields in Go order, JSON names, ``omitempty`` and the releases
that have the field (see :mod:`.gojson`). Nothing here knows HTTP or runs anything.
"""
