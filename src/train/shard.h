/* shard.h — token shards (.tok), the on-disk form of a tokenized corpus (DESIGN.md §2).
 *
 * Layout (little-endian):
 *   offset 0   char[8]  magic "LMTOKv1\0"
 *   offset 8   uint64   number of tokens n
 *   offset 16  uint64   vocab size (every id is < this)
 *   offset 24  uint64   end-of-text id (documents are separated by it), or UINT64_MAX
 *   offset 32  uint32   ids[n]
 * The file is memory-mapped for reading; the header is validated against the
 * file size so a truncated shard is reported, not read past. */
#ifndef LM_SHARD_H
#define LM_SHARD_H

#include <stdint.h>
#include <stddef.h>
#include "base/base.h"

#define LM_SHARD_MAGIC "LMTOKv1"
#define LM_SHARD_HEADER 32

typedef struct {
  lm_mmap map;
  const uint32_t *ids;   /* (n) */
  uint64_t n;
  uint64_t vocab_size;
  uint64_t eot;
} lm_shard;

/* Opens and validates a shard: size matches n, and every id < vocab_size when check_ids. */
lm_status lm_shard_open(lm_shard *s, const char *path, int check_ids);
void lm_shard_close(lm_shard *s);
/* Writes ids atomically as a shard. */
lm_status lm_shard_write(const char *path, const uint32_t *ids, uint64_t n, uint64_t vocab_size, uint64_t eot);

#endif
