#!/bin/sh
# Sleeps $SLEEP_SECONDS (default 0.2), then writes the input back as
# $TMP_OUTPUT_DIR/<input file name>.out, so each input's output is named after it.
sleep "${SLEEP_SECONDS:-0.2}"
cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH").out"
