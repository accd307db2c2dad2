#!/usr/bin/env bash
# build_rag.sh — builds the libFuzzer target for the retrieval index reader (fuzz_rag_index)
# with clang's -fsanitize=fuzzer,address,undefined, and writes seed indexes beside it (made
# by lm_rag_index_save through a small seed program, so they follow the format exactly).
# Only src/rag/index.c and base's error/io/mem are compiled: a build takes seconds.
#
#   fuzz/build_rag.sh                  # -> build-fuzz/
#   build-fuzz/fuzz_rag_index build-fuzz/corpus_rag -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_rag"
SRCS="src/rag/index.c src/base/error.c src/base/io.c src/base/mem.c"
COMMON="-g -O1 -D_GNU_SOURCE -Iinclude -Isrc $(pkg-config --cflags libcjson)"
# shellcheck disable=SC2086
$CC $COMMON -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
  fuzz/fuzz_rag_index.c $SRCS -lm -o "$OUT/fuzz_rag_index"

# seeds: indexes of a few small documents, with and without vectors
cat > "$OUT/rag_seed.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "rag/index_impl.h"
int main(int argc, char **argv) {
  const char *docs[] = {"The capital of Zorbia is Quellport.\n\nIt lies by the sea.\n", "a b c\n\nd e\n\nf g h i j k",
                        "caf\xc3\xa9 na\xc3\xafve UPPER lower 123 x2\n\n\n\nend"};
  for (int k = 0; k < 4; k++) {
    lm_rag_chunk_opts o = {k + 2, k};
    lm_rag_index *ix;
    if (lm_rag_index_new(&ix, &o)) return 1;
    for (int d = 0; d < 3; d++) {
      char name[16];
      snprintf(name, sizeof name, "doc%d.txt", d);
      if (lm_rag_index_add(ix, name, docs[d], strlen(docs[d]))) return 1;
    }
    if (k & 1) {   /* vectors, as lm_rag_index_embed would set them */
      ix->dim = 3;
      ix->vecs = calloc((size_t)(ix->n_chunks * 3), sizeof *ix->vecs);
      for (int64_t i = 0; i < ix->n_chunks; i++) ix->vecs[i * 3 + i % 3] = 1;
      ix->embed_model = lm_strdup("/models/bert");
    }
    char path[512];
    snprintf(path, sizeof path, "%s/seed%d.idx", argv[1], k);
    if (lm_rag_index_save(ix, path)) return 1;
    lm_rag_index_free(ix);
  }
  return 0;
}
C
# shellcheck disable=SC2086
$CC $COMMON "$OUT/rag_seed.c" $SRCS -lm -o "$OUT/rag_seed"
"$OUT/rag_seed" "$OUT/corpus_rag"
rm -f "$OUT/rag_seed.c" "$OUT/rag_seed"
echo "built $OUT/fuzz_rag_index; seeds in $OUT/corpus_rag"
