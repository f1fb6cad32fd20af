#!/usr/bin/env bash
# The one prepared GPU check (issue 16 item 5): PASE extraction, SampleRNN generation and
# training, a 2-process DDP run; under 8 minutes on a CUDA machine. Without CUDA it runs
# every part once on the CPU at its smallest size and exits 0. See bench/gpu.py.
#
#     bash bench/gpu.sh [--budget SECONDS_PER_PART]     (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python3
    common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    for venv in .venv "${common:+$common/../.venv}"; do  # this checkout's, or the main worktree's
        if [[ -n "$venv" && -x "$venv/bin/python" ]]; then
            PYTHON="$venv/bin/python"
            break
        fi
    done
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# a hard stop under 8 minutes, whatever a part does (each part also has its own budget)
exec timeout --kill-after 10 470 "$PYTHON" bench/gpu.py "$@"
