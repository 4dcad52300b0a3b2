"""Other manifest formats, recognised by their shape and converted to OpenWorkflow documents.

A format is a plug-in (see `registry.Format`): ``detect`` looks at one parsed document, ``convert``
returns equivalent OpenWorkflow documents whose nodes keep the source file's positions, so every
diagnostic still points at the original file and line. ``OpenWorkflow.load`` runs every parsed
document through `convert_documents` before normalisation; ``owf convert`` prints the result.
This layer sits just above `manifest` and imports nothing but it and `errors`.
"""

from owf_magics.formats.registry import (
    BUILTIN_FORMATS,
    Format,
    convert_documents,
    detect_format,
    formats,
    register_format,
    to_plain,
)

__all__ = [
    "BUILTIN_FORMATS",
    "Format",
    "convert_documents",
    "detect_format",
    "formats",
    "register_format",
    "to_plain",
]
