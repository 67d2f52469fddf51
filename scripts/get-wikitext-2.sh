#!/usr/bin/env bash
# get-wikitext-2.sh — downloads and unpacks wikitext-2-raw-v1 (the perplexity convention's test set) into
# the current directory, or DIR when given: DIR/wikitext-2-raw/wiki.test.raw. Needs a network; no test uses it.
set -euo pipefail

url="https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip"
dir="${1:-.}"
mkdir -p "$dir"
cd "$dir"

if [ -f wikitext-2-raw/wiki.test.raw ]; then
    echo "wikitext-2-raw/wiki.test.raw is already here"
else
    zip="wikitext-2-raw-v1.zip"
    if command -v curl >/dev/null; then
        curl -fL --retry 3 -o "$zip" "$url"
    else
        wget -O "$zip" "$url"
    fi
    if command -v unzip >/dev/null; then
        unzip -o -q "$zip"
    else
        python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall()" "$zip"
    fi
    rm -f "$zip"
fi

echo "usage: build/bin/perplexity -m MODEL_DIR -f $(pwd)/wikitext-2-raw/wiki.test.raw -c 512"
