#!/bin/sh
# The script of a service deployed from the AI4OS dashboard, written from its contract
# (ai4os/ai4-papi etc/oscar/service.yaml, the template ai4-papi fills for every deployment).
# Each rule below names the behaviour of that template it follows.
#
# Input: a JSON document. Each key but "oscar-files" is a predict argument (--<key> <value>);
# each {"key", "file_format", "data"} of "oscar-files" is decoded into a file named
# tmp-file-<random>.<file_format> and passed as --<key> <file>. Output:
#   - the input's name ends in .json (a bucket upload): <name>.json (DEEPaaS's answer as JSON,
#     from --deepaas_method_output) and <name>.log (the console) in $TMP_OUTPUT_DIR;
#   - a request body (event-file-<uuid>, a synchronous run or a /job): no file; the console,
#     DEEPaaS's log with its "return: {...}" line, is the answer;
#   - any other name: <name>.log only (the input was renamed .json and could not be read).
# Needs python3, and deepaas-cli and deepaas-run on the PATH (the model's image has them).

# Rule: report the DEEPaaS and Python versions first.
echo "[*] Using DEEPaaS version $(deepaas-run --version)"
echo "[*] Using Python version $(python3 --version)"
# Rule: the outputs are named after the input's basename up to its first dot.
FILE_NAME=$(basename "$INPUT_FILE_PATH" | cut -f 1 -d '.')
OUTPUT_FILE="$TMP_OUTPUT_DIR/$FILE_NAME"

# Rule: everything the Python step and deepaas-cli print goes to service.log.
python3 - >service.log 2>&1 <<'PY'
import base64
import json
import os
import random
import string
import subprocess
import sys

REQUIRED = (2, 5, 0)  # rule: DEEPaaS must be at least 2.5.0


def random_name(extension):
    """Rule: files are tmp-file-<5 random letters>; an output name goes to TMP_OUTPUT_DIR."""
    stem = "tmp-file-" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    if extension:
        return stem + "." + extension
    path = os.path.join(os.environ["TMP_OUTPUT_DIR"], stem)
    print("Output will be saved on:", path)
    return path


# Rule: the version is the last line deepaas-cli --version prints, without any "-dev" part.
answer = subprocess.run(["deepaas-cli", "--version"], stdout=subprocess.PIPE)
current = answer.stdout.decode("utf-8").strip().split("\n")[-1].split("-")[0]
if tuple(int(part) for part in current.split(".")) < REQUIRED:
    print("Error: DEEPaaS version must be >=%s. Current version is: %s"
          % (".".join(map(str, REQUIRED)), current))
    sys.exit(1)

# Rule: an input whose name ends in .json is saved as an output; any other is renamed
# <name>.json, read as JSON, and answered on the console.
path = os.environ["INPUT_FILE_PATH"]
save_output = path.endswith(".json")
if not save_output:
    os.rename(path, path + ".json")
    path += ".json"

with open(path) as handle:
    document = json.loads(handle.read())

command = ["deepaas-cli"]
if save_output:
    command += ["--deepaas_method_output", random_name("")]
command.append("predict")
for key, value in document.items():
    if key == "oscar-files":
        for item in value:
            name = random_name(item["file_format"])
            print("[*] Processing file: ", name)
            with open(name, "wb") as handle:
                handle.write(base64.b64decode(item["data"]))
            command += ["--" + item["key"], name]
    else:
        # Rule: numbers become text; other values go to the command as they are.
        if isinstance(value, (int, float)):
            value = str(value)
        command += ["--" + key, value]

print("[*] Final command: " + " ".join(command))
try:
    subprocess.run(command)
except Exception:
    print("Something went wrong during the execution.")
    sys.exit(1)
PY

# Rule: the JSON output is the file named on DEEPaaS's "New output is <file>" line (its fifth
# space-separated field); a request body answers with the console; otherwise keep the log.
if grep -q 'New output is' service.log; then
    SAVED=$(grep 'New output is' service.log | cut -f 5 -d ' ')
    mv "$SAVED" "$OUTPUT_FILE.json"
    mv service.log "$OUTPUT_FILE.log"
elif echo "$FILE_NAME" | grep event-file; then
    cat service.log
else
    mv service.log "$OUTPUT_FILE.log"
fi
