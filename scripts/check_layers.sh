#!/usr/bin/env bash
# The layering of DESIGN.md, checked on the includes: each folder of src/ may include only
# the folders below it. Run by ctest as `layering`; prints each offending include.
set -u
cd "$(dirname "$0")/.."
bad=0
check() { # $1: folder, rest: folders it must not include
  local dir=$1
  shift
  for up in "$@"; do
    if grep -rn "#include \"$up/" "src/$dir" >/dev/null 2>&1; then
      grep -rn "#include \"$up/" "src/$dir" | sed "s/^/layering: src\/$dir must not include $up\/: /"
      bad=1
    fi
  done
}
check core ops nn models peft train eval data api
check ops nn models peft train eval data api
check nn models peft train eval data api
check peft models train eval api
check models peft train eval api
check data models peft train eval api
check quant nn models peft train eval data api gen serve; for low in core ops; do check "$low" quant; done
check gen models peft train eval api; for low in core ops nn data models peft; do check "$low" gen; done
for low in core ops nn data models peft gen train eval api; do check "$low" serve; done
check dist ops nn models peft train eval data api gen serve quant; for low in core ops nn data quant; do check "$low" dist; done
if [ $bad = 0 ]; then echo "layering: 1 passed, 0 failed"; else echo "layering: 0 passed, 1 failed"; fi
exit $bad
