#!/bin/sh
# make demo: generates a small synthetic checkpoint shaped like
# DeepSeek-R1-Distill-Qwen (random weights, real layout and tokenizer
# structure), converts it to q8_0 and chats one turn with it. The weights are
# random, so the text is gibberish: this shows the pipeline, not a model.
set -e
BUILD=${1:-build}
DIR=$BUILD/demo
mkdir -p "$DIR"
if [ ! -f "$DIR/hf/config.json" ]; then
    echo "== generating a synthetic R1-Distill-Qwen-like checkpoint in $DIR/hf"
    "$BUILD/tools/gen_checkpoint" --preset small-qwen2 --out "$DIR/hf"
fi
if [ ! -f "$DIR/model.dqf" ]; then
    echo "== converting it: deepc convert $DIR/hf $DIR/model.dqf --type q8_0"
    "$BUILD/deepc" convert "$DIR/hf" "$DIR/model.dqf" --type q8_0
fi
echo "== deepc info $DIR/model.dqf"
"$BUILD/deepc" info "$DIR/model.dqf"
echo "== deepc run -m $DIR/model.dqf --chat -p 'Why is the sky blue?' -n 32 --temp 0"
"$BUILD/deepc" run -m "$DIR/model.dqf" --chat -p "Why is the sky blue?" -n 32 --temp 0
