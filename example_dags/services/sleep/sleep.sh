#!/bin/sh
# Sleeps $SLEEP_SECONDS (default 0.2), then writes the input back as $TMP_OUTPUT_DIR/out.txt.
sleep "${SLEEP_SECONDS:-0.2}"
cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.txt"
