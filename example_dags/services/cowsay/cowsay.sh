#!/bin/sh
# Echo service for smoke tests: prints an ASCII cow saying the input's "message" (when the
# input is a JSON object with that key) or else the input's text. It writes no output file, so
# a synchronous run returns this console text. With SLEEP_SECONDS set, it sleeps that long first.
if [ -n "${SLEEP_SECONDS:-}" ]; then
    sleep "$SLEEP_SECONDS"
fi
exec python3 - <<'PY'
import json
import os
import textwrap

WIDTH = 40
COW = r"""        \   ^__^
         \  (oo)\_______
            (__)\       )\/\
                ||----w |
                ||     ||"""


def message(raw):
    """The JSON object's "message" if there is one, else the raw text."""
    try:
        document = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(document, dict) and "message" in document:
        value = document["message"]
        return value if isinstance(value, str) else json.dumps(value)
    return raw


def bubble(text):
    """A speech bubble around text wrapped at WIDTH columns."""
    lines = [
        piece
        for line in text.expandtabs().splitlines() or [""]
        for piece in textwrap.wrap(line, WIDTH) or [""]
    ]
    width = max(map(len, lines))
    if len(lines) == 1:
        borders = [("<", ">")]
    else:
        borders = [("/", "\\")] + [("|", "|")] * (len(lines) - 2) + [("\\", "/")]
    body = [
        left + " " + line.ljust(width) + " " + right
        for line, (left, right) in zip(lines, borders)
    ]
    return "\n".join([" " + "_" * (width + 2)] + body + [" " + "-" * (width + 2)])


with open(os.environ["INPUT_FILE_PATH"], "rb") as handle:
    raw = handle.read().decode("utf-8", errors="replace")
print(bubble(message(raw).strip()))
print(COW)
PY
