#!/usr/bin/env bash
# The GPU suite: every benchmark in its GPU configuration, one JSON of figures, under 8 minutes.
#
#   bash benchmarks/gpu_suite.sh                        # on a machine with a CUDA device
#   bash benchmarks/gpu_suite.sh --out DIR              # logs and DIR/gpu_suite.json there
#   bash benchmarks/gpu_suite.sh --dry-run              # print the plan, run nothing
#   bash benchmarks/gpu_suite.sh --device cpu --quick   # the CPU rehearsal (tiny sizes, minutes)
#
# Steps, most important first, each under its own time limit and all of them under one budget
# (SUITE_BUDGET seconds, default 450: a step that would start with under 20 s left is skipped):
#   invariants       benchmarks/invariants_check.py: full/empty/cut-logits errors and EAP vs
#                    float32, random GPT-2 and Llama, in bfloat16 and float32
#   attribution-*    benchmarks/attribution_cost.py, GPT-2-small shape, bfloat16 and float32:
#                    EAP and EAP-IG(5) against the model's own forward+backward, peak memory
#   scaling-*        benchmarks/scaling.py: GPT-2 small/medium/large, Llama-1B shape, batches
#                    scaled to the device, bfloat16 and float32; the fitted cost model
#   acdc             benchmarks/acdc_cost.py: fast ACDC over the GPT-2-small graph (float32:
#                    tau is 2.5e-4 of KL, below bfloat16's resolution), edges tested per second
#                    (from its progress lines when the time limit stops it first)
#   view             benchmarks/view_latency.py --no-browser: ablation latency of acdc view
# Not in the suite: validate.py (ground-truth tables, CPU sized, no --device) and
# tracking_overhead.py (MLflow's cost, not the device's).
# Batch sizes: GPU batches are for 80 GB, doubled from 140 GB of device memory. --quick runs
# tiny shapes with 4x the time limits and a 1800 s budget (a shared CPU is slow to import).
# Exit status: 2 without a CUDA device (unless --device cpu), 1 if a step failed, else 0.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="results/gpu_suite"
DEVICE="cuda"
QUICK=0
DRY=0
BUDGET=""
PY="${PYTHON:-python}"
export PYTHONUNBUFFERED=1  # a step stopped by its time limit keeps what it printed
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --budget) BUDGET="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gpu_suite: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

if [ "$DRY" = 0 ] && [ "${DEVICE%%:*}" = "cuda" ]; then
  if ! "$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_suite: no CUDA device: torch {torch.__version__} sees none "
             f"(torch.cuda.is_available() is False). Run it on a machine with a GPU, or "
             f"rehearse it on CPU with: bash benchmarks/gpu_suite.sh --device cpu --quick")
EOF
  then exit 2; fi
fi

# -- sizes ----------------------------------------------------------------------------------
MEM_GB=0
if [ "$DRY" = 0 ] && [ "${DEVICE%%:*}" = "cuda" ]; then
  MEM_GB=$("$PY" -c "import torch; d = torch.device('$DEVICE'); \
print(torch.cuda.get_device_properties(d.index or 0).total_memory // 2**30)")
fi
F=$(( MEM_GB >= 140 ? 2 : 1 ))
TINY="--layers 2 --heads 4 --d-model 64 --vocab 500"
LIMIT_X=1
if [ "$QUICK" = 1 ]; then
  LIMIT_X=4
  INV=(--families gpt2 llama)
  ATTR_BF16=($TINY --batch 2 --pos 8 --repeats 1 --ig-steps 2)
  ATTR_FP32=("${ATTR_BF16[@]}")
  SCALE_BF16=(--quick --shapes gpt2-tiny)
  SCALE_FP32=(--quick --shapes gpt2-tiny)
  ACDC=(--layers 2 --heads 2 --d-model 32 --vocab 200 --batch 2 --pos 6 --naive-edges 3)
  POS=($TINY --batch 2 --pos 8 --repeats 1)
  VIEW=(--skip-gpt2 --repeats 2)
else
  INV=(--families gpt2 llama)
  ATTR_BF16=(--batch $((128 * F)) --pos 128 --repeats 3)
  ATTR_FP32=(--batch $((64 * F)) --pos 128 --repeats 3)
  SCALE_BF16=(--scale $((16 * F)))
  SCALE_FP32=(--scale $((8 * F)))
  ACDC=(--batch 32 --pos 16 --naive-edges 10)
  POS=(--batch $((32 * F)) --pos 64 --repeats 3)
  VIEW=(--repeats 10 --n-examples 64)
fi
BUDGET="${BUDGET:-${SUITE_BUDGET:-$(( QUICK ? 1800 : 450 ))}}"

# -- running --------------------------------------------------------------------------------
[ "$DRY" = 1 ] || mkdir -p "$OUT"
STEPS="$OUT/steps.tsv"
[ "$DRY" = 1 ] || printf 'step\trc\tseconds\tlimit\n' > "$STEPS"
[ "$DRY" = 1 ] && echo "# budget ${BUDGET}s for all steps (a step gets at most what is left)"
T0=$(date +%s)
FAILED=0

# step NAME LIMIT_S COMMAND...: stdout to OUT/NAME.log, stderr to OUT/NAME.err
step() {
  local name="$1" limit=$(( $2 * LIMIT_X )); shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$DRY" = 1 ]; then echo "[$name, <= ${limit}s] $*"; return; fi
  if [ "$limit" -lt 20 ]; then
    echo "gpu_suite: $name skipped (${left}s of the ${BUDGET}s budget left)" >&2
    printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$STEPS"; return
  fi
  echo "gpu_suite: $name (<= ${limit}s)" >&2
  local t=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2> "$OUT/$name.err"
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t ))" "$limit" >> "$STEPS"
  if [ "$rc" != 0 ]; then
    FAILED=1
    echo "gpu_suite: $name exited $rc$([ "$rc" = 124 ] && echo ' (time limit)'); see $OUT/$name.err" >&2
  fi
}

B="$HERE"
D=(--device "$DEVICE")
step invariants 90 "$PY" "$B/invariants_check.py" "${D[@]}" --dtype bfloat16 float32 \
  "${INV[@]}" --json "$OUT/invariants.json"
step attribution-bfloat16 70 "$PY" "$B/attribution_cost.py" "${D[@]}" --dtype bfloat16 \
  "${ATTR_BF16[@]}"
step attribution-float32 70 "$PY" "$B/attribution_cost.py" "${D[@]}" --dtype float32 \
  "${ATTR_FP32[@]}"
step positions 40 "$PY" "$B/position_cost.py" "${D[@]}" --dtype bfloat16 "${POS[@]}"
step scaling-bfloat16 90 "$PY" "$B/scaling.py" "${D[@]}" --dtype bfloat16 "${SCALE_BF16[@]}" \
  --json "$OUT/scaling-bfloat16.json"
step acdc 120 "$PY" "$B/acdc_cost.py" "${D[@]}" --dtype float32 "${ACDC[@]}"
step scaling-float32 70 "$PY" "$B/scaling.py" "${D[@]}" --dtype float32 "${SCALE_FP32[@]}" \
  --json "$OUT/scaling-float32.json"
step view 40 "$PY" "$B/view_latency.py" "${D[@]}" --no-browser "${VIEW[@]}"
[ "$DRY" = 1 ] && exit 0

# -- one JSON -------------------------------------------------------------------------------
"$PY" - "$OUT" "$DEVICE" "$(( $(date +%s) - T0 ))" <<'EOF'
import json, re, sys
from pathlib import Path

out, device, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines()[1:]:
    name, rc, secs, limit = line.split("\t")
    steps[name] = {"rc": None if rc == "skipped" else int(rc), "seconds": int(secs),
                   "limit_s": int(limit), "timed_out": rc in ("124", "137")}
text = lambda name: (out / f"{name}.log").read_text() if (out / f"{name}.log").exists() else ""
err = lambda name: (out / f"{name}.err").read_text() if (out / f"{name}.err").exists() else ""
num = lambda pattern, s, cast=float: (lambda m: cast(m.group(1)) if m else None)(
    re.search(pattern, s, re.M))


def attribution(name):
    s = text(name)
    b, p = num(r"batch (\d+) x", s, int), num(r"x (\d+) tokens", s, int)
    rows = {}
    for m in re.finditer(r"^(baseline fwd\+bwd(?: \+W grads)?|baseline, 2-D unembedding|"
                         r"eap(?:-ig \(\d+ steps\))?)\s+([\d.]+)\s+([\d.]+)x\s+"
                         r"(?:([\d.]+)x\s+)?([\d.]+)\s*$", s, re.M):
        secs = float(m.group(2))
        rows[m.group(1)] = {"seconds": secs, "x_baseline": float(m.group(3)),
                            "x_2d_baseline": None if m.group(4) is None else float(m.group(4)),
                            "peak_mib": float(m.group(5)),
                            "tokens_per_s": b * p / secs if b and p and secs else None}
    return {"batch": b, "pos": p, "invariant_full": num(r"full circuit ([\d.e+-]+),", s),
            "invariant_empty": num(r"empty circuit ([\d.e+-]+)", s), "rows": rows,
            "eap_ratio": rows.get("eap", {}).get("x_baseline"),
            "eap_ig_ratio": next((v["x_baseline"] for k, v in rows.items()
                                  if k.startswith("eap-ig")), None)}


def positions():
    """EAP with position-aware edges against EAP without, per split (position_cost.py)."""
    rows = {}
    for m in re.finditer(r"^(eap(?:-ig\(\d+\))?(?: tokens| named)?)\s+([\d,]+)\s+([\d.]+)\s+"
                         r"([\d.]+)x\s+([\d.]+)x\s*([\d.e+-]*)\s*$", text("positions"), re.M):
        rows[m.group(1)] = {"edges": int(m.group(2).replace(",", "")),
                            "seconds": float(m.group(3)), "x_unsplit": float(m.group(4)),
                            "cpu_x_unsplit": float(m.group(5)),
                            "sum_error": float(m.group(6)) if m.group(6) else None}
    return rows


def scaling(name):
    p = out / f"{name}.json"
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    rows = [{k: r[k] for k in ("shape", "batch", "pos", "n_edges", "baseline_s", "eap_s",
                               "ratio", "weights_mb", "baseline_peak_mb", "eap_peak_mb")}
            | {"eap_tokens_per_s": r["tokens"] / r["eap_s"],
               "baseline_tokens_per_s": r["tokens"] / r["baseline_s"]} for r in d["rows"]]
    return {"rows": rows, "fits": {k: {"coef": f["coef"], "features": f["features"],
                                       "max_abs_rel_error": f["max_abs_rel_error"]}
                                   for k, f in d["fits"].items()}}


def acdc():
    s, e = text("acdc"), err("acdc")
    res = {"forward_ms": num(r"one plain forward pass over the batch: ([\d.]+) ms", s),
           "tau": num(r"tau ([\d.e+-]+)", s),
           "edges_tested": num(r"^fast:\s+(\d+) edges tested", s, int),
           "seconds": num(r"^fast:.* in ([\d.]+)s", s),
           "edges_per_s": num(r"^fast\s+([\d.]+)", s), "naive_edges_per_s": num(r"^naive\s+([\d.]+)", s),
           "speed_up": num(r"speed-up: ([\d.]+)x", s),
           "identical_decisions": num(r"identical decisions: (True|False)", s, lambda v: v == "True")}
    prog = re.findall(r"fast: (\d+)/(\d+) nodes, (\d+) tested, ([\d.]+)s", e)
    if res["edges_per_s"] is None and prog:  # stopped by the time limit: the rate so far
        nodes, total, tested, secs = prog[-1]
        res.update(partial=True, nodes_done=f"{nodes}/{total}", edges_tested=int(tested),
                   seconds=float(secs), edges_per_s=int(tested) / max(float(secs), 1e-9))
    return res


def view():
    """Per session: every 'server side[, warm|cold]' and 'browser round trip' median, in ms."""
    sessions, cur = [], None
    for line in text("view").splitlines():
        m = re.match(r"^(\S.*?): (\d+) examples, (\d+) edges", line)
        if m:
            cur = {"session": m.group(1), "examples": int(m.group(2))}
            sessions.append(cur)
            continue
        m = re.match(r"^\s+(server side(?:, \w+)?|browser round trip)\s+median\s+([\d.]+) ms",
                     line)
        if m and cur is not None:
            key = re.sub(r"\W+", "_", m.group(1))
            cur[f"{key}_median_ms"] = float(m.group(2))
    return sessions


inv = out / "invariants.json"
info = {}
try:
    import torch
    info = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device).index or 0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1))
except Exception as e:  # the figures matter more than the header
    info = {"error": repr(e)}
figures = {"suite": "gpu_suite", "device": device, **info, "seconds": seconds,
           "steps": steps,
           "invariants": json.loads(inv.read_text()) if inv.exists() else None,
           "attribution": {d: attribution(f"attribution-{d}") for d in ("bfloat16", "float32")},
           "scaling": {d: scaling(f"scaling-{d}") for d in ("bfloat16", "float32")},
           "acdc": acdc(), "positions": positions(), "view": view(),
           # every step's last lines, so a figure the parsers above missed is still here
           "logs": {name: text(name).splitlines()[-25:] for name in steps}}
(out / "gpu_suite.json").write_text(json.dumps(figures, indent=1) + "\n")
a = figures["attribution"]
print(f"gpu_suite: {out / 'gpu_suite.json'} in {seconds}s; EAP/baseline "
      f"bf16 {a['bfloat16']['eap_ratio']} fp32 {a['float32']['eap_ratio']}; EAP-IG/baseline "
      f"bf16 {a['bfloat16']['eap_ig_ratio']} fp32 {a['float32']['eap_ig_ratio']}; ACDC "
      f"{figures['acdc']['edges_per_s']} edges/s; invariants passed: "
      f"{(figures['invariants'] or {}).get('passed')}")
EOF
[ "$?" = 0 ] || FAILED=1
exit $FAILED
