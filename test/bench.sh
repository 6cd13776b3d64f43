#!/bin/sh
# make bench: speed of deepc on synthetic checkpoints with the real shapes of
# DeepSeek-R1-Distill-Qwen-1.5B and DeepSeek-V2-Lite. The weights are random,
# so only the speed means anything. Everything large lives outside the
# repository, in $DEEPC_BENCH_DIR (default ~/.cache/deepc-bench), and is
# generated / converted only when missing:
#   NAME/             the Hugging Face checkpoint (BF16, gen_checkpoint)
#   NAME-TYPE.dqf     converted models
#   results.jsonl     every `deepc bench -o jsonl` line of every run, appended
# Then runs `deepc bench --membw` once, `deepc bench -m X` for each model
# (dense: pp512 + tg128; MoE: pp128 + tg64, the shapes of the llama.cpp figures
# in the table) and prints one table. A benchmark: it never fails on speed.
#
# Environment:
#   DEEPC_BENCH_DIR      where checkpoints and models go
#   DEEPC_BENCH_MOE=0    skip DeepSeek-V2-Lite (31 GB BF16 + ~27 GB of conversions)
#   DEEPC_BENCH_TYPES    types or recipes to convert to (default: q8_0 q4)
#   DEEPC_BENCH_THREADS  threads (default 2), DEEPC_BENCH_REPS repetitions (3)
#   DEEPC_BENCH_P, DEEPC_BENCH_N  prompt and generated tokens (override both shapes)
set -e
BUILD=${1:-build}
DEEPC=$BUILD/deepc
GEN=$BUILD/tools/gen_checkpoint
DIR=${DEEPC_BENCH_DIR:-$HOME/.cache/deepc-bench}
THREADS=${DEEPC_BENCH_THREADS:-2}
REPS=${DEEPC_BENCH_REPS:-3}
TYPES=${DEEPC_BENCH_TYPES:-q8_0 q4}

# name preset parameters(for size estimates) checkpoint-bytes
MODELS="qwen2-1.5b:qwen2-1.5b:1777088000:3554333505"
if [ "${DEEPC_BENCH_MOE:-1}" != 0 ]; then
    MODELS="$MODELS deepseek-v2-lite:deepseek-v2-lite:15706484224:31412968448"
fi

# Approximate bits per weight of each type, for the disk-space estimate
# (unknown types count as 16).
bits() {
    case $1 in
        f32) echo 32 ;; f16|bf16) echo 16 ;; q8_0) echo 8.5 ;; q4) echo 4.9 ;; q2-experts) echo 3.1 ;;
        q5_*) echo 5.5 ;; q4_*) echo 4.5 ;; q3_*) echo 3.5 ;; q2_*) echo 2.7 ;; *) echo 16 ;;
    esac
}

mkdir -p "$DIR"

# ---- disk space: what is still missing must fit, with 5% to spare -----------
need=0
missing=
for m in $MODELS; do
    name=${m%%:*}; rest=${m#*:}; rest=${rest#*:}; params=${rest%%:*}; ckpt=${rest#*:}
    if [ ! -f "$DIR/$name/config.json" ]; then
        need=$(awk -v a="$need" -v b="$ckpt" 'BEGIN { printf "%.0f", a + b }')
        missing="$missing $name/"
    fi
    for t in $TYPES; do
        if [ ! -f "$DIR/$name-$t.dqf" ]; then
            need=$(awk -v a="$need" -v p="$params" -v b="$(bits "$t")" 'BEGIN { printf "%.0f", a + p * b / 8 }')
            missing="$missing $name-$t.dqf"
        fi
    done
done
free_kb=$(df -Pk "$DIR" | awk 'NR == 2 { print $4 }')
if ! awk -v need="$need" -v free="$free_kb" 'BEGIN { exit !(need * 1.05 <= free * 1024.0) }'; then
    awk -v need="$need" -v free="$free_kb" -v dir="$DIR" 'BEGIN {
        printf "bench: not enough disk space in %s: %.1f GB needed, %.1f GB free.\n", dir, need * 1.05 / 1e9, free * 1024 / 1e9 }' >&2
    echo "bench: still to create:$missing" >&2
    echo "bench: free some space, set DEEPC_BENCH_DIR to a larger disk, or limit DEEPC_BENCH_TYPES." >&2
    exit 1
fi
[ -z "$missing" ] || awk -v need="$need" -v dir="$DIR" 'BEGIN { printf "== bench: creating %.1f GB in %s\n", need / 1e9, dir }'

# ---- checkpoints and conversions (only what is missing) --------------------
for m in $MODELS; do
    name=${m%%:*}; rest=${m#*:}; preset=${rest%%:*}
    if [ ! -f "$DIR/$name/config.json" ]; then
        echo "== generating $DIR/$name (gen_checkpoint --preset $preset)"
        rm -rf "${DIR:?}/${name:?}.tmp"
        "$GEN" --preset "$preset" --out "$DIR/$name.tmp"
        rm -rf "${DIR:?}/${name:?}"
        mv "$DIR/$name.tmp" "$DIR/$name"
    fi
    for t in $TYPES; do
        if [ ! -f "$DIR/$name-$t.dqf" ]; then
            echo "== converting: deepc convert $DIR/$name $DIR/$name-$t.dqf --type $t"
            "$DEEPC" convert "$DIR/$name" "$DIR/$name-$t.dqf" --type "$t"
        fi
    done
done

# ---- measurements ------------------------------------------------------------
OUT=$(mktemp "${TMPDIR:-/tmp}/deepc-bench.XXXXXX")
trap 'rm -f "$OUT"' EXIT INT TERM
echo "== deepc bench --membw -t $THREADS"
"$DEEPC" bench --membw -t "$THREADS" -o jsonl | tee -a "$OUT"
for m in $MODELS; do
    name=${m%%:*}
    case $name in deepseek*) P=${DEEPC_BENCH_P:-128}; N=${DEEPC_BENCH_N:-64} ;; *) P=${DEEPC_BENCH_P:-512}; N=${DEEPC_BENCH_N:-128} ;; esac
    for t in $TYPES; do
        echo "== deepc bench -m $DIR/$name-$t.dqf -p $P -n $N -t $THREADS -r $REPS"
        "$DEEPC" bench -m "$DIR/$name-$t.dqf" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o jsonl | tee -a "$OUT"
    done
done
cat "$OUT" >> "$DIR/results.jsonl"

# ---- one table ---------------------------------------------------------------
# Each model gives a pp line then a tg line; the membw line comes first. The
# llama.cpp column repeats the figures the issue gives for this machine (2
# threads, llama-bench, same shapes; Q4_K_M against our q4 recipe): they were
# not measured by this script.
echo
awk -v threads="$THREADS" '
function str(line, key,   r) {
    if (match(line, "\"" key "\": \"[^\"]*\"")) { r = substr(line, RSTART, RLENGTH); sub(/^"[^"]*": "/, "", r); sub(/"$/, "", r); return r }
    return ""
}
function num(line, key,   r) {
    if (match(line, "\"" key "\": [-0-9.eE+]+")) { r = substr(line, RSTART, RLENGTH); sub(/^"[^"]*": /, "", r); return r + 0 }
    return -1
}
function seen_model(model) { if (!(model in seen)) { seen[model] = 1; order[n++] = model } }
/"test": "membw"/ { bw = num($0, "gb_per_s"); next }
/"test": "pp/ { model = str($0, "model"); pp[model] = num($0, "avg_ts"); ppsd[model] = num($0, "stddev_ts"); ppn[model] = str($0, "test");
                 size[model] = num($0, "model_size"); isa = str($0, "isa"); seen_model(model); next }
/"test": "tg/ { model = str($0, "model"); tg[model] = num($0, "avg_ts"); tgsd[model] = num($0, "stddev_ts"); tgn[model] = str($0, "test");
                 gbs[model] = num($0, "gb_per_s"); size[model] = num($0, "model_size"); isa = str($0, "isa"); seen_model(model) }
END {
    ref["qwen2-1.5b q8_0"] = "90.8 / 19.9"; ref["qwen2-1.5b q4"] = "127.8 / 33.3 (Q4_K_M)"
    ref["deepseek-v2-lite q4"] = "41.4 / 18.2 (Q4_K_M)"
    printf "threads %s, isa %s, read bandwidth %.2f GB/s (deepc bench --membw)\n\n", threads, isa, bw
    printf "| %-16s | %-4s | %10s | %-6s | %16s | %-5s | %16s | %6s | %8s | %-23s |\n", "model", "type", "size", "pp", "t/s", "tg", "t/s", "GB/s", "roofline", "llama.cpp pp / tg t/s"
    printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------------", "------", "-----------:", "--------", "-----------------:", "-------", "-----------------:", "-------:", "---------:", "-------------------------"
    for (i = 0; i < n; i++) {
        m = order[i]; f = m; sub(/.*\//, "", f); sub(/\.dqf$/, "", f)
        name = f; type = f
        if (match(f, /-(q2-experts|[a-z0-9_]+)$/)) { type = substr(f, RSTART + 1); name = substr(f, 1, RSTART - 1) }
        roof = bw > 0 && gbs[m] > 0 ? sprintf("%.1f%%", 100 * gbs[m] / bw) : "-"
        r = (name " " type) in ref ? ref[name " " type] : "-"
        printf "| %-16s | %-4s | %6.2f GiB | %-6s | %7.2f +- %5.2f | %-5s | %7.2f +- %5.2f | %6.2f | %8s | %-23s |\n", name, type, size[m] / 1073741824,
               ppn[m], pp[m], ppsd[m], tgn[m], tg[m], tgsd[m], gbs[m], roof, r
    }
}' "$OUT"
echo
echo "(roofline: generation weight bandwidth / measured read bandwidth; all lines appended to $DIR/results.jsonl)"
