#!/usr/bin/env bash
# The README's install on a fresh machine, checked end to end:
#   1. a new virtual environment with nothing but the plain install (no extras), built as a
#      real wheel (`pip install .`, not editable), so resources/demo must ship inside it;
#   2. every `qtstudio-cli` example of the README's "Command line" section, run from a folder
#      outside the checkout on the demo model and on a tiny Hugging Face folder;
#   3. the window started under Xvfb, found with xdotool and photographed.
# pip's cache is reused (wheels of every dependency, the local torch wheel), so a warm run
# takes a minute or two. QTSTUDIO_FRESH_KEEP=1 keeps the environment for a rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PY="${PYTHON:-python3}"
WORK="$REPO/build/fresh-install"
VENV="$WORK/venv"
START=$SECONDS

# pip warns about every index folder this machine's config names but lacks; not news here
pip_quiet() { "$VPY" -m pip "$@" 2>&1 | { grep -v 'is neither a file nor a directory' || true; }; }
note() { printf '   [fresh %dm%02ds] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

if [ "${QTSTUDIO_FRESH_KEEP:-0}" != "1" ] || [ ! -x "$VENV/bin/python" ]; then
  rm -rf "$WORK"
  mkdir -p "$WORK"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
note "venv $VENV"
# torch first and pinned, as the README says: any other spelling pulls a multi-GB CUDA build.
pip_quiet install -q "torch==2.13.0"
note "torch installed"
pip_quiet install -q "$REPO" "torch==2.13.0"
note "qtstudio installed from a wheel"

RUN="$WORK/run"
rm -rf "$RUN"
mkdir -p "$RUN"
cd "$RUN"  # away from the checkout: nothing may come from resources/ or qtstudio/ there
"$VPY" - <<'EOF'
import importlib.metadata as md
import qtstudio
from qtstudio.core import demo

site = qtstudio.__file__
assert "/venv/" in site, f"qtstudio imported from {site}, not from the fresh venv"
assert "/venv/" in str(demo.demo_dir()), f"demo found at {demo.demo_dir()}, not in the wheel"
assert not md.distribution("qtstudio").read_text("direct_url.json") or \
    '"editable": true' not in md.distribution("qtstudio").read_text("direct_url.json")
print(f"   qtstudio {qtstudio.__version__} from {site}; demo at {demo.demo_dir()}")
EOF

# A tiny llama folder (config, safetensors, tokenizer.json) written with the venv's own
# transformers: a runtime dependency now, so the plain install has it.
HF="$RUN/tiny-llama"
(cd "$REPO" && "$VPY" -c "
from tests.helpers.tiny_models import build_tiny_llama
build_tiny_llama('$HF')" 2>&1 | { grep -v 'Writing model shards' || true; })
note "tiny Hugging Face folder $HF"

# The README's examples, exactly as written, with MODEL replaced.
"$VPY" - "$REPO/README.md" > "$RUN/examples.txt" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
for line in section.splitlines():
    cmd = line.strip()
    if cmd.startswith("qtstudio-cli "):
        print(re.sub(r"\s+#.*$", "", cmd))
EOF
n=$(wc -l < "$RUN/examples.txt")
[ "$n" -ge 8 ] || { echo "found only $n CLI examples in README.md" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"
# Calibration text for the examples that take --data: a few KB of the standard library's own
# documentation (about ten windows of the tiny model's tokens), written beside the examples.
"$VPY" -c "
from pydoc_data.topics import topics
text = '\n\n'.join(topics[k] for k in sorted(topics))
open('calib.txt', 'w', encoding='utf-8').write(text[:12000])"
for model in demo "$HF"; do
  while IFS= read -r cmd; do
    if [ "$model" = demo ] && [[ $cmd == *"--data "* ]]; then
      # calibration text feeds language models; the demo is a digits MLP
      note "(language models only) $cmd"
      continue
    fi
    cmd="${cmd//MODEL/$model}"
    note "$cmd"
    # examples write r.json, out.gguf ... into the current folder; a clean one per model
    if ! eval "$cmd" > "$RUN/last.log" 2>&1; then
      cat "$RUN/last.log" >&2
      echo "README example failed on the fresh install: $cmd" >&2
      exit 1
    fi
    if grep -q "Traceback" "$RUN/last.log"; then
      cat "$RUN/last.log" >&2
      echo "README example printed a traceback: $cmd" >&2
      exit 1
    fi
  done < "$RUN/examples.txt"
  rm -rf r.json b.json out.gguf out.nnef.tgz imatrix.gguf out/
done

# The window, on a virtual X server.
if ! command -v Xvfb > /dev/null || ! command -v xdotool > /dev/null; then
  note "installing xvfb and xdotool"
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    apt-get install -y -q xvfb xdotool > /dev/null || {
      apt-get update -q > /dev/null && apt-get install -y -q xvfb xdotool > /dev/null; }
  else
    echo "Xvfb/xdotool missing and apt-get not usable as root here" >&2
    exit 1
  fi
fi
# -displayfd: Xvfb picks a free display and writes its number once it accepts clients
: > "$RUN/display"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3> "$RUN/display" 2> /dev/null &
XVFB_PID=$!
APP_PID=""
cleanup() {
  [ -z "$APP_PID" ] || kill "$APP_PID" 2> /dev/null || true
  kill "$XVFB_PID" 2> /dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$RUN/display" ] && break; sleep 0.1; done
[ -s "$RUN/display" ] || { echo "Xvfb did not start" >&2; exit 1; }
export DISPLAY=":$(head -1 "$RUN/display")"
unset QT_QPA_PLATFORM WAYLAND_DISPLAY
qtstudio demo > "$RUN/window.log" 2>&1 &
APP_PID=$!
if ! WIN=$(timeout 90 xdotool search --sync --onlyvisible --name qtstudio | head -1) \
    || [ -z "$WIN" ]; then
  cat "$RUN/window.log" >&2
  echo "the window did not appear under Xvfb" >&2
  exit 1
fi
sleep 2  # let the first paint (tree, plots) finish
"$VPY" - "$RUN/window.png" <<'EOF'
import sys
from PySide6.QtGui import QGuiApplication

app = QGuiApplication(sys.argv[:1])
img = app.primaryScreen().grabWindow(0).toImage()
colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
img.save(sys.argv[1])
print(f"   screenshot {sys.argv[1]}: {img.width()}x{img.height()}, {len(colours)} colours")
assert len(colours) > 20, "the screen is (nearly) one colour: nothing was drawn"
EOF
kill -INT "$APP_PID"
status=0
wait "$APP_PID" || status=$?
APP_PID=""
# 0: closed from its event loop; 130: Ctrl-C still caught the end of start-up (loaded machine)
if [ "$status" != 0 ] && [ "$status" != 130 ]; then
  cat "$RUN/window.log" >&2
  echo "the window did not close cleanly on Ctrl-C (exit status $status)" >&2
  exit 1
fi
if grep -q Traceback "$RUN/window.log"; then cat "$RUN/window.log" >&2; exit 1; fi
note "window opened (xdotool id $WIN), screenshot taken, closed on Ctrl-C"
[ "${QTSTUDIO_FRESH_KEEP:-0}" = "1" ] || rm -rf "$VENV"
note "fresh install checks passed"
